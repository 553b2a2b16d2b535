package main

// The rsync comparison: two network namespaces joined by a veth pair,
// both ends shaped with tc tbf; the mirror's receiver and rsync's daemon
// run in pgbench-a, the mirror's sender and rsync's client in pgbench-b.
// Bytes on the wire are the veth's counters (both directions, TCP/IP
// headers included); CPU is utime+stime+cutime+cstime of every process
// involved, read from /proc.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

const (
	nsA, nsB     = "pgbench-a", "pgbench-b"
	vethA, vethB = "pgbva", "pgbvb"
	addrA, addrB = "10.231.0.1", "10.231.0.2"
	rsyncPort    = "8873"
	mirrorPort   = "7788"
)

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func setupNetns(rate string) (cleanup func(), err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "tc", "rsync"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not installed", tool)
		}
	}
	cleanup = func() {
		exec.Command("ip", "netns", "del", nsA).Run()
		exec.Command("ip", "netns", "del", nsB).Run()
	}
	cleanup() // leftovers of an interrupted run
	steps := [][]string{
		{"ip", "netns", "add", nsA},
		{"ip", "netns", "add", nsB},
		{"ip", "link", "add", vethA, "netns", nsA, "type", "veth", "peer", "name", vethB, "netns", nsB},
		{"ip", "-n", nsA, "addr", "add", addrA + "/24", "dev", vethA},
		{"ip", "-n", nsB, "addr", "add", addrB + "/24", "dev", vethB},
		{"ip", "-n", nsA, "link", "set", "lo", "up"},
		{"ip", "-n", nsB, "link", "set", "lo", "up"},
		{"ip", "-n", nsA, "link", "set", vethA, "up"},
		{"ip", "-n", nsB, "link", "set", vethB, "up"},
		{"ip", "netns", "exec", nsA, "tc", "qdisc", "add", "dev", vethA, "root", "tbf", "rate", rate, "burst", "4mb", "latency", "50ms"},
		{"ip", "netns", "exec", nsB, "tc", "qdisc", "add", "dev", vethB, "root", "tbf", "rate", rate, "burst", "4mb", "latency", "50ms"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			cleanup()
			return nil, err
		}
	}
	return cleanup, nil
}

// wireBytes is the veth's rx+tx in namespace A.
func wireBytes() uint64 {
	out, err := exec.Command("ip", "-n", nsA, "-s", "-j", "link", "show", vethA).Output()
	check(err)
	var v []struct {
		Stats struct {
			RX struct{ Bytes uint64 } `json:"rx"`
			TX struct{ Bytes uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	check(json.Unmarshal(out, &v))
	if len(v) != 1 {
		check(errors.New("no veth statistics"))
	}
	return v[0].Stats.RX.Bytes + v[0].Stats.TX.Bytes
}

// procCPU is a process's CPU time including its reaped children.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime (fields 14-17)
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

type measured struct {
	wall time.Duration
	wire uint64
	cpu  time.Duration
	// peak resident sizes (VmHWM) of the two mirror processes (receiver,
	// sender) during the step, or of rsync's client (its maxrss)
	hwm [2]int64
	// read and write system calls (syscr, syscw) of the two mirror
	// processes (receiver, sender) during the step
	sysr, sysw [2]uint64
	// context switches of their threads
	ctxsw [2]uint64
	// CPU time of the two mirror processes (receiver, sender)
	pcpu [2]time.Duration
}

// procSwitches sums the voluntary and involuntary context switches of a
// process's threads (Go's threads live as long as the process).
func procSwitches(pid int) (n uint64) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// procIO returns a process's read and write system calls so far.
func procIO(pid int) (r, w uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			r = n
		case "syscw":
			w = n
		}
	}
	return r, w
}

// procMem returns a process's VmHWM and VmRSS in bytes.
func procMem(pid int) (hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			hwm = n << 10
		case "VmRSS:":
			rss = n << 10
		}
	}
	return hwm, rss
}

// resetPeak starts a new VmHWM period for a process (clear_refs 5).
func resetPeak(pid int) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// compareOpts says what the namespace comparison runs.
type compareOpts struct {
	rate        string
	runs        int
	compression []string // mirror variants: "off", "zstd"
	rsyncZ      bool     // also rsync -z
	rsyncFsync  bool     // also rsync --fsync (a copy as durable as the mirror's round)
	cases       []string // "initial", "1%", "10%", "region"
}

// tool is one way of copying the source image to a target in the other
// namespace: the mirror (two processes) or rsync.
type tool struct {
	name   string
	target string
	pids   func() []int // processes whose CPU and memory count
	copy   func() (clientCPU time.Duration, clientRSS int64)
	stop   func()
	mirror bool
}

func rsyncCompare(dir string, size, region int64, o compareOpts) error {
	cleanup, err := setupNetns(o.rate)
	if err != nil {
		return err
	}
	defer cleanup()
	self, err := os.Executable()
	check(err)
	src := filepath.Join(dir, "a.img")
	rsyncDir := filepath.Join(dir, "rsync")
	conf := filepath.Join(dir, "rsyncd.conf")
	check(os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\npid file = %s/rsyncd.pid\n[pg]\npath = %s\nread only = false\nuid = root\ngid = root\n", dir, rsyncDir)), 0o600))

	// The rsync daemon, for all runs.
	daemon := exec.Command("ip", "netns", "exec", nsA, "rsync", "--daemon", "--no-detach", "--config="+conf,
		"--address="+addrA, "--port="+rsyncPort, "--log-file="+filepath.Join(dir, "rsyncd.log"))
	check(daemon.Start())
	defer func() { daemon.Process.Kill(); daemon.Wait() }()
	time.Sleep(300 * time.Millisecond) // the daemon binds

	mirrorTool := func(run, k int, compression string) *tool {
		name := "mirror"
		if compression != "off" {
			name += " " + compression
		}
		dst := filepath.Join(dir, fmt.Sprintf("m%d.img", k))
		os.Remove(dst)
		f, err := os.Create(dst)
		check(err)
		check(f.Truncate(size))
		f.Close()
		port := strconv.Itoa(7788 + k)
		prof := func(which string) []string {
			if d := os.Getenv("PGBENCH_PROFILE"); d != "" { // CPU profiles of the two ends
				return []string{"-cpuprofile", filepath.Join(d, fmt.Sprintf("%s-%d-%d.prof", which, run, k))}
			}
			return nil
		}
		state := filepath.Join(dir, fmt.Sprintf("ns-state-%d-%d", run, k))
		recv := exec.Command("ip", append(append([]string{"netns", "exec", nsA, self}, prof("receiver")...),
			"-role", "receiver", "-memory-limit", memLimit, "-compression", compression, "-img", dst,
			"-state", state+"a", "-listen", addrA+":"+port, "-peer", addrB+":"+port)...)
		recvIn, err := recv.StdinPipe()
		check(err)
		recv.Stderr = os.Stderr
		check(recv.Start())
		send := exec.Command("ip", append(append([]string{"netns", "exec", nsB, self}, prof("sender")...),
			"-role", "sender", "-memory-limit", memLimit, "-compression", compression, "-img", src,
			"-state", state+"b", "-listen", addrB+":"+port, "-peer", addrA+":"+port)...)
		sendIn, err := send.StdinPipe()
		check(err)
		sendOut, err := send.StdoutPipe()
		check(err)
		send.Stderr = os.Stderr
		check(send.Start())
		lines := bufio.NewScanner(sendOut)
		return &tool{name: name, target: dst, mirror: true,
			pids: func() []int { return []int{recv.Process.Pid, send.Process.Pid} },
			copy: func() (time.Duration, int64) {
				fmt.Fprintln(sendIn, "sync")
				if !lines.Scan() {
					check(errors.New("sender ended"))
				}
				if !strings.HasPrefix(lines.Text(), "ok") {
					check(errors.New("sender: " + lines.Text()))
				}
				return 0, 0
			},
			stop: func() {
				sendIn.Close()
				send.Wait()
				recvIn.Close()
				recv.Wait()
				os.Remove(dst)
			},
		}
	}
	rsyncTool := func(k int, args ...string) *tool {
		name := strings.TrimSpace("rsync " + strings.Join(args, " "))
		dst := filepath.Join(rsyncDir, fmt.Sprintf("r%d.img", k))
		check(os.MkdirAll(rsyncDir, 0o700))
		os.Remove(dst)
		return &tool{name: name, target: dst,
			pids: func() []int { return []int{daemon.Process.Pid} },
			copy: func() (time.Duration, int64) {
				a := append([]string{"netns", "exec", nsB, "rsync", "--inplace", "--no-whole-file", "--ignore-times"}, args...)
				c := exec.Command("ip", append(a, src, fmt.Sprintf("rsync://%s:%s/pg/r%d.img", addrA, rsyncPort, k))...)
				out, err := c.CombinedOutput()
				if err != nil {
					check(fmt.Errorf("rsync: %w: %s", err, out))
				}
				ru := c.ProcessState.SysUsage().(*syscall.Rusage)
				return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), int64(ru.Maxrss) << 10
			},
			stop: func() { os.Remove(dst) },
		}
	}
	measure := func(t *tool) measured {
		pids := append(t.pids(), daemon.Process.Pid)
		if t.mirror {
			for _, pid := range t.pids() {
				resetPeak(pid)
			}
		}
		cpu := func() (c time.Duration) {
			for _, pid := range pids {
				c += procCPU(pid)
			}
			return c
		}
		var r0, w0s, x0 [2]uint64
		var p0 [2]time.Duration
		if t.mirror {
			for i, pid := range t.pids() {
				r0[i], w0s[i] = procIO(pid)
				x0[i] = procSwitches(pid)
				p0[i] = procCPU(pid)
			}
		}
		w0, c0 := wireBytes(), cpu()
		t0 := time.Now()
		clientCPU, clientRSS := t.copy()
		wall := time.Since(t0)
		time.Sleep(100 * time.Millisecond) // let the daemon reap its child
		m := measured{wall: wall, wire: wireBytes() - w0, cpu: cpu() - c0 + clientCPU}
		if t.mirror {
			for i, pid := range t.pids() {
				m.hwm[i], _ = procMem(pid)
				r, w := procIO(pid)
				m.sysr[i], m.sysw[i] = r-r0[i], w-w0s[i]
				m.ctxsw[i] = procSwitches(pid) - x0[i]
				m.pcpu[i] = procCPU(pid) - p0[i]
			}
		} else {
			m.hwm[1] = clientRSS
		}
		return m
	}

	type caseDef struct {
		key, name string
		change    func(r *rand.Rand)
	}
	var cases []caseDef
	for _, c := range o.cases {
		switch c {
		case "initial":
			cases = append(cases, caseDef{c, "initial sync", nil})
		case "1%":
			cases = append(cases, caseDef{c, "1% random 4 KiB", func(r *rand.Rand) { changeRandom(src, size, 0.01, r) }})
		case "10%":
			cases = append(cases, caseDef{c, "10% random 4 KiB", func(r *rand.Rand) { changeRandom(src, size, 0.10, r) }})
		case "region":
			cases = append(cases, caseDef{c, human(region) + " contiguous", func(r *rand.Rand) { changeRegion(src, size, region, r) }})
		default:
			return fmt.Errorf("unknown case %q", c)
		}
	}
	// results[case][tool] over the runs
	results := make([]map[string][]measured, len(cases))
	for i := range results {
		results[i] = map[string][]measured{}
	}
	var toolNames []string
	var rest [][2]int64
	r := rand.New(rand.NewPCG(4, 5))
	fmt.Printf("\nrsync comparison over a veth pair shaped to %s (tc tbf), namespaces %s/%s, %d run(s)\n", o.rate, nsA, nsB, o.runs)
	for run := range o.runs {
		var tools []*tool
		for k, c := range o.compression {
			tools = append(tools, mirrorTool(run, k, c))
		}
		tools = append(tools, rsyncTool(0))
		if o.rsyncZ {
			tools = append(tools, rsyncTool(1, "-z"))
		}
		if o.rsyncFsync {
			tools = append(tools, rsyncTool(2, "--fsync"))
		}
		if run == 0 {
			for _, t := range tools {
				toolNames = append(toolNames, t.name)
			}
		}
		time.Sleep(300 * time.Millisecond) // the mirrors connect
		for ci, c := range cases {
			if c.change != nil {
				c.change(r)
			}
			// The tools take turns, in an order that rotates with the run:
			// the first to write fresh page cache pays for it on a VM.
			for k := range tools {
				t := tools[(k+run)%len(tools)]
				results[ci][t.name] = append(results[ci][t.name], measure(t))
			}
			fmt.Printf("  run %d: %s done\n", run+1, c.name)
		}
		for _, t := range tools {
			same, err := sameFiles(src, t.target)
			check(err)
			if !same {
				return fmt.Errorf("%s: %s differs from the source at the end", t.name, t.target)
			}
		}
		time.Sleep(restWait)
		var rs [2]int64
		for i, pid := range tools[0].pids() {
			_, rs[i] = procMem(pid)
		}
		rest = append(rest, rs)
		for _, t := range tools {
			t.stop()
		}
	}

	fmt.Printf("%-22s %-12s %-27s %-22s %-22s %-8s  %s\n", "case", "tool", "wall s: median [min, max]", "CPU s: median [min,max]",
		"x rsync wall (CPU)", "wire", "peak resident (VmHWM), max over runs")
	for ci, c := range cases {
		base := results[ci]["rsync"]
		for _, name := range toolNames {
			ms := results[ci][name]
			wall := stat(ms, func(m measured) float64 { return m.wall.Seconds() })
			cpu := stat(ms, func(m measured) float64 { return m.cpu.Seconds() })
			ratio := ""
			if name != "rsync" && len(base) == len(ms) {
				var wr, cr []float64
				for i := range ms {
					wr = append(wr, ms[i].wall.Seconds()/base[i].wall.Seconds())
					cr = append(cr, ms[i].cpu.Seconds()/base[i].cpu.Seconds())
				}
				ratio = fmt.Sprintf("%.3f (%.2f)", median(wr), median(cr))
			}
			var h [2]int64
			for _, m := range ms {
				h[0], h[1] = max(h[0], m.hwm[0]), max(h[1], m.hwm[1])
			}
			mem := fmt.Sprintf("receiver %s, sender %s", human(h[0]), human(h[1]))
			if !strings.HasPrefix(name, "mirror") {
				mem = "client " + human(h[1])
			}
			fmt.Printf("%-22s %-12s %-27s %-22s %-22s %-8s  %s\n", c.name, name, wall, cpu, ratio, human(int64(ms[0].wire)), mem)
		}
	}
	for ci, c := range cases {
		for _, name := range toolNames {
			if !strings.HasPrefix(name, "mirror") {
				continue
			}
			ms := results[ci][name]
			med := func(f func(measured) uint64) uint64 {
				var v []float64
				for _, m := range ms {
					v = append(v, float64(f(m)))
				}
				return uint64(median(v))
			}
			fmt.Printf("%s, %s: CPU s receiver %s, sender %s\n", c.name, name,
				stat(ms, func(m measured) float64 { return m.pcpu[0].Seconds() }),
				stat(ms, func(m measured) float64 { return m.pcpu[1].Seconds() }))
			fmt.Printf("%s, %s (medians): receiver %d read and %d write system calls, %d context switches; sender %d, %d, %d\n", c.name, name,
				med(func(m measured) uint64 { return m.sysr[0] }), med(func(m measured) uint64 { return m.sysw[0] }),
				med(func(m measured) uint64 { return m.ctxsw[0] }),
				med(func(m measured) uint64 { return m.sysr[1] }), med(func(m measured) uint64 { return m.sysw[1] }),
				med(func(m measured) uint64 { return m.ctxsw[1] }))
		}
	}
	for i, rs := range rest {
		fmt.Printf("run %d: %s processes resident %v after the last round (VmRSS): receiver %s, sender %s\n",
			i+1, toolNames[0], restWait, human(rs[0]), human(rs[1]))
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat formats median [min, max] of f over ms.
func stat(ms []measured, f func(measured) float64) string {
	var v []float64
	for _, m := range ms {
		v = append(v, f(m))
	}
	if len(v) == 1 {
		return fmt.Sprintf("%.2f", v[0])
	}
	return fmt.Sprintf("%.2f [%.2f, %.2f]", median(v), slices.Min(v), slices.Max(v))
}

// restWait is how long after the last round the resident size at rest is read.
const restWait = 5 * time.Second

// role runs one end of the mirror for the namespace comparison, with the
// daemon's soft memory limit.
func role(which, img, state, listen, peer, compression string) {
	if n, err := parseSize(memLimit); err == nil {
		debug.SetMemoryLimit(n)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("PGBENCH_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("end", which)
	}
	check(os.MkdirAll(state, 0o700))
	// compression is off, zstd, or zstd:LEVEL (1-4, klauspost's levels),
	// followed by variants in any order: "/nolowat" the receiver's bulk
	// reads without SO_RCVLOWAT, "/nobuffer" its bulk reads a system call
	// per TLS record, "/nodirect" its initial sync through the page cache,
	// "/nogather" each TLS record sent with a system call of its own.
	variant := map[string]bool{}
	parts := strings.Split(compression, "/")
	compression = parts[0]
	for _, v := range parts[1:] {
		switch v {
		case "nolowat", "nobuffer", "nodirect", "nogather":
			variant[v] = true
		default:
			check(fmt.Errorf("unknown mirror variant %q", v))
		}
	}
	noGather, noDirect, noLowat, noBuffer := variant["nogather"], variant["nodirect"], variant["nolowat"], variant["nobuffer"]
	comp, level, _ := strings.Cut(compression, ":")
	c, err := sdcard.ParseCompression(comp)
	check(err)
	lv, _ := strconv.Atoi(level)
	m, err := sdcard.NewMirror(sdcard.MirrorConfig{
		Device: img, StateDir: state, PairKey: []byte("benchmark pair key, 32 bytes...."),
		ListenAddr: listen, PeerAddr: peer, Mode: sdcard.ModePeriodic, Interval: time.Hour,
		ReplyTimeout: 10 * time.Minute,
		// The receiver (the lower address) dials; the sender listens only
		// once the initial case starts, and the wall time of that case
		// would otherwise include up to MaxBackoff of the receiver's wait
		// before it dials again (rsync's client connects at once).
		MinBackoff: 2 * time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Compression: c, ZstdLevel: lv, NoRcvLowat: noLowat, NoReadBuffer: noBuffer, NoDirect: noDirect, NoGather: noGather,
	}, log)
	check(err)
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if which == "sender" {
		_, err := m.NewGeneration(1)
		check(err)
		m.SetPrimary(true)
	}
	if which != "sender" {
		go m.Run(ctx)
		io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
		return
	}
	in := bufio.NewScanner(os.Stdin)
	started := false
	for in.Scan() {
		if !started { // the first round runs on connection
			started = true
			go m.Run(ctx)
			for e := range m.Events() {
				if e.Kind == sdcard.EventRoundDone {
					fmt.Println("ok", e.Round.Blocks, e.Round.WireBytes)
					break
				}
				if e.Kind == sdcard.EventRoundFailed {
					fmt.Println("error", e.Err)
					break
				}
			}
			continue
		}
		st, err := m.SyncNow(ctx)
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println("ok", st.Blocks, st.WireBytes)
	}
}
