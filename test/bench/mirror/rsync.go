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
}

func rsyncCompare(dir string, size, region int64, rate string) error {
	cleanup, err := setupNetns(rate)
	if err != nil {
		return err
	}
	defer cleanup()
	self, err := os.Executable()
	check(err)

	src := filepath.Join(dir, "a.img")
	mirrorDst := filepath.Join(dir, "m.img")
	f, err := os.Create(mirrorDst)
	check(err)
	check(f.Truncate(size))
	f.Close()
	rsyncDir := filepath.Join(dir, "rsync")
	check(os.MkdirAll(rsyncDir, 0o700))
	conf := filepath.Join(dir, "rsyncd.conf")
	check(os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\npid file = %s/rsyncd.pid\n[pg]\npath = %s\nread only = false\nuid = root\ngid = root\n", dir, rsyncDir)), 0o600))

	// The rsync daemon.
	daemon := exec.Command("ip", "netns", "exec", nsA, "rsync", "--daemon", "--no-detach", "--config="+conf,
		"--address="+addrA, "--port="+rsyncPort, "--log-file="+filepath.Join(dir, "rsyncd.log"))
	check(daemon.Start())
	defer func() { daemon.Process.Kill(); daemon.Wait() }()

	// The mirror's two ends.
	recv := exec.Command("ip", "netns", "exec", nsA, self, "-role", "receiver", "-img", mirrorDst,
		"-state", filepath.Join(dir, "ns-state-a"), "-listen", addrA+":"+mirrorPort, "-peer", addrB+":"+mirrorPort)
	recvIn, err := recv.StdinPipe()
	check(err)
	recv.Stderr = os.Stderr
	check(recv.Start())
	defer func() { recvIn.Close(); recv.Wait() }()
	send := exec.Command("ip", "netns", "exec", nsB, self, "-role", "sender", "-img", src,
		"-state", filepath.Join(dir, "ns-state-b"), "-listen", addrB+":"+mirrorPort, "-peer", addrA+":"+mirrorPort)
	sendIn, err := send.StdinPipe()
	check(err)
	sendOut, err := send.StdoutPipe()
	check(err)
	send.Stderr = os.Stderr
	check(send.Start())
	defer func() { sendIn.Close(); send.Wait() }()
	lines := bufio.NewScanner(sendOut)
	time.Sleep(300 * time.Millisecond) // the daemon binds

	measure := func(do func()) measured {
		w0, c0 := wireBytes(), procCPU(recv.Process.Pid)+procCPU(send.Process.Pid)+procCPU(daemon.Process.Pid)
		t0 := time.Now()
		do()
		wall := time.Since(t0)
		time.Sleep(100 * time.Millisecond) // let the daemon reap its child
		return measured{wall: wall, wire: wireBytes() - w0,
			cpu: procCPU(recv.Process.Pid) + procCPU(send.Process.Pid) + procCPU(daemon.Process.Pid) - c0}
	}
	mirrorRound := func() measured {
		return measure(func() {
			fmt.Fprintln(sendIn, "sync")
			if !lines.Scan() {
				check(errors.New("sender ended"))
			}
			if !strings.HasPrefix(lines.Text(), "ok") {
				check(errors.New("sender: " + lines.Text()))
			}
		})
	}
	rsyncRun := func() measured {
		var clientCPU time.Duration
		m := measure(func() {
			c := exec.Command("ip", "netns", "exec", nsB, "rsync", "--inplace", "--no-whole-file", "--ignore-times",
				src, "rsync://"+addrA+":"+rsyncPort+"/pg/r.img")
			out, err := c.CombinedOutput()
			if err != nil {
				check(fmt.Errorf("rsync: %w: %s", err, out))
			}
			ru := c.ProcessState.SysUsage().(*syscall.Rusage)
			clientCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		})
		m.cpu += clientCPU
		return m
	}

	r := rand.New(rand.NewPCG(4, 5))
	type row struct {
		name      string
		mir, rsyn measured
	}
	var rows []row
	step := func(name string, change func()) {
		if change != nil {
			change()
		}
		rows = append(rows, row{name, mirrorRound(), rsyncRun()})
		fmt.Printf("  %s done\n", name)
	}
	fmt.Printf("\nrsync comparison over a veth pair shaped to %s (tc tbf), namespaces %s/%s\n", rate, nsA, nsB)
	step("initial sync", nil)
	step("1% random 4 KiB", func() { changeRandom(src, size, 0.01, r) })
	step("10% random 4 KiB", func() { changeRandom(src, size, 0.10, r) })
	step(human(region)+" contiguous", func() { changeRegion(src, size, region, r) })

	for _, p := range []string{mirrorDst, filepath.Join(rsyncDir, "r.img")} {
		same, err := sameFiles(src, p)
		check(err)
		if !same {
			return fmt.Errorf("%s differs from the source at the end", p)
		}
	}
	fmt.Printf("%-22s %-7s %9s %12s %8s\n", "case", "tool", "wall", "wire", "CPU s")
	for _, r := range rows {
		for _, x := range []struct {
			tool string
			m    measured
		}{{"mirror", r.mir}, {"rsync", r.rsyn}} {
			fmt.Printf("%-22s %-7s %8.2fs %12s %8.2f\n", r.name, x.tool, x.m.wall.Seconds(), human(int64(x.m.wire)), x.m.cpu.Seconds())
		}
	}
	return nil
}

// role runs one end of the mirror for the namespace comparison.
func role(which, img, state, listen, peer string) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("PGBENCH_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("end", which)
	}
	check(os.MkdirAll(state, 0o700))
	m, err := sdcard.NewMirror(sdcard.MirrorConfig{
		Device: img, StateDir: state, PairKey: []byte("benchmark pair key, 32 bytes...."),
		ListenAddr: listen, PeerAddr: peer, Mode: sdcard.ModePeriodic, Interval: time.Hour,
		ReplyTimeout: 10 * time.Minute, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
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
