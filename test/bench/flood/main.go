// Command flood measures what a garbage flood on the failover line costs a
// pair: the daemons' CPU time per flood frame (the drop path) and the
// rhythm of their LAN 2 heartbeats, idle and during the flood, in network
// namespaces. A host plugged into the LAN 2 switch sends broadcast frames
// of EtherType 0x88B5 at -rate frames/s, one kind of garbage per run:
//
//	garbage   random bytes (no magic): the socket filter drops them
//	long      magic, pair id, version 2, length field 1500 in a 1500-byte
//	          frame: longer than any frame, the socket filter drops it
//	length    the same in 250 bytes: not the length of version 2, dropped
//	          by the socket filter (by the decoder before the HMAC without it)
//	forged    a frame of the exact length, magic and pair id, random body:
//	          one HMAC each, then dropped as forged
//	jumbo     2000 bytes with magic and pair id (with -mtu above 2014)
//
// Run as root, with the machine otherwise idle:
//
//	go run ./test/bench/flood -rate 100000 -dur 10s
//	go run ./test/bench/flood -bin OLD/pairguard   # another build, to compare
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/test/netns"
)

func main() {
	rate := flag.Int("rate", 100000, "flood frames per second")
	dur := flag.Duration("dur", 10*time.Second, "flood duration per kind")
	idle := flag.Duration("idle", 5*time.Second, "idle measurement before the floods")
	mtu := flag.Int("mtu", 0, "LAN 2 MTU (0: 1500); above 2014 the jumbo kind runs too")
	kinds := flag.String("kinds", "garbage,long,length,forged,jumbo", "kinds of garbage")
	binFlag := flag.String("bin", "", "pairguard binary to measure (default: build this tree)")
	flag.Parse()
	if err := run(*rate, *dur, *idle, *mtu, strings.Split(*kinds, ","), *binFlag); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(rate int, dur, idle time.Duration, mtu int, kinds []string, bin string) error {
	if why := netns.Available(); why != "" {
		return fmt.Errorf("%s", why)
	}
	dir, err := os.MkdirTemp("", "pg-flood")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		if bin, err = netns.Build(dir); err != nil {
			return err
		}
	}
	p, err := netns.Setup(dir, bin)
	if err != nil {
		return err
	}
	defer p.Close()
	// The flooding host: a port on the LAN 2 switch, in the client namespace.
	for _, c := range [][]string{
		{"ip", "-n", p.Switch, "link", "add", "f2", "type", "veth", "peer", "name", "eth2", "netns", p.Client},
		{"ip", "-n", p.Switch, "link", "set", "f2", "master", "br2", "up"},
		{"ip", "-n", p.Client, "link", "set", "eth2", "up"},
	} {
		if err := sh(c...); err != nil {
			return err
		}
	}
	if mtu > 0 {
		for _, c := range [][]string{
			{"-n", p.Switch, "link", "set", "m2", "mtu"}, {"-n", p.Switch, "link", "set", "s2", "mtu"}, {"-n", p.Switch, "link", "set", "f2", "mtu"},
			{"-n", p.Main.NS, "link", "set", "eth2", "mtu"}, {"-n", p.Spare.NS, "link", "set", "eth2", "mtu"}, {"-n", p.Client, "link", "set", "eth2", "mtu"},
		} {
			if err := sh(append(append([]string{"ip"}, c...), strconv.Itoa(mtu))...); err != nil {
				return err
			}
		}
	}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.WriteConfig(n, netns.Options{}); err != nil {
			return err
		}
	}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Start(n); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := p.WaitRole(p.Main, "primary", 10*time.Second); err != nil {
		return err
	}
	if _, err := p.WaitRole(p.Spare, "secondary", 5*time.Second); err != nil {
		return err
	}
	key, err := pairKey(p.Main.Config)
	if err != nil {
		return err
	}
	macs := map[string]net.HardwareAddr{}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		s, err := netns.MAC(n.NS, "eth2")
		if err != nil {
			return err
		}
		macs[n.Name], _ = net.ParseMAC(s)
	}
	pids := map[string]int{}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if pids[n.Name], err = pidIn(n.NS); err != nil {
			return err
		}
	}
	rec, err := openIn(p.Client, "eth2", heartbeatFilter(macs["main"], macs["spare"]))
	if err != nil {
		return err
	}
	flood, err := openIn(p.Client, "eth2", dropAll())
	if err != nil {
		return err
	}
	hb := &heartbeats{at: map[string][]time.Time{}}
	go hb.record(rec, macs)
	src, err := netns.MAC(p.Client, "eth2")
	if err != nil {
		return err
	}
	srcMAC, _ := net.ParseMAC(src)

	fmt.Printf("flood: %s, %s, rate %d/s for %v per kind, LAN 2 MTU %d, GOARCH %s, %d CPUs\n",
		time.Now().UTC().Format(time.RFC3339), bin, rate, dur, max(mtu, 1500), runtime.GOARCH, runtime.NumCPU())
	fmt.Println("| kind | frames sent | rate achieved | main CPU | spare CPU | spare ns/frame | main ns/frame | spare hb p50 / p99 / max | main hb p50 / p99 / max | spare counters | roles, alarms |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	measure := func(kind string, d time.Duration, payload func(*rand.Rand, []byte) []byte) error {
		c0 := cpu(pids)
		f0, _ := counters(p, p.Spare)
		hb.reset()
		var sent int
		var took time.Duration
		if payload == nil {
			time.Sleep(d)
			took = d
		} else {
			sent, took = send(flood, srcMAC, rate, d, payload)
		}
		c1 := cpu(pids)
		f1, _ := counters(p, p.Spare)
		time.Sleep(300 * time.Millisecond) // let the last heartbeats in
		roles := []string{}
		for _, n := range []*netns.Node{p.Main, p.Spare} {
			st, err := p.Status(n)
			if err != nil {
				return err
			}
			roles = append(roles, fmt.Sprintf("%s %s %v", n.Name, st.Role, st.Alarms))
		}
		perFrame := func(name string) string {
			if sent == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f", float64(c1[name]-c0[name])/float64(sent))
		}
		fmt.Printf("| %s | %d | %.0f/s | %v | %v | %s | %s | %s | %s | %s | %s |\n", kind, sent, float64(sent)/took.Seconds(),
			(c1["main"] - c0["main"]).Round(time.Millisecond), (c1["spare"] - c0["spare"]).Round(time.Millisecond),
			perFrame("spare"), perFrame("main"), hb.summary("spare"), hb.summary("main"), diff(f0, f1), strings.Join(roles, "; "))
		return nil
	}
	if err := measure("idle", idle, nil); err != nil {
		return err
	}
	pair := binary.BigEndian.AppendUint32(nil, frame.PairID(key))
	header := func(b []byte, n int) []byte {
		b = append(b[:0], 'P', 'G', frame.ProtocolVersion, byte(frame.TypeHeartbeat))
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = append(b, 0, 0)
		b = append(b, pair...)
		return b
	}
	gens := map[string]func(*rand.Rand, []byte) []byte{
		"garbage": func(r *rand.Rand, b []byte) []byte {
			b = b[:100]
			fill(r, b)
			b[0] = 'X'
			return b
		},
		"long": func(r *rand.Rand, b []byte) []byte {
			b = header(b, 1500)[:1500]
			fill(r, b[12:])
			return b
		},
		"length": func(r *rand.Rand, b []byte) []byte {
			b = header(b, 250)[:250]
			fill(r, b[12:])
			return b
		},
		"forged": func(r *rand.Rand, b []byte) []byte {
			b = header(b, frame.Len)[:frame.Len]
			fill(r, b[12:])
			return b
		},
		"jumbo": func(r *rand.Rand, b []byte) []byte {
			b = header(b, 2000)[:2000]
			fill(r, b[12:])
			return b
		},
	}
	for _, k := range kinds {
		g, ok := gens[k]
		if !ok {
			return fmt.Errorf("unknown kind %q", k)
		}
		if k == "jumbo" && mtu < 2014 {
			continue
		}
		if err := measure(k, dur, g); err != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	return nil
}

func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// send floods broadcast frames with payloads from gen at rate for d, in
// bursts every millisecond. It returns the frames sent and the time taken.
func send(fd int, src net.HardwareAddr, rate int, d time.Duration, gen func(*rand.Rand, []byte) []byte) (int, time.Duration) {
	r := rand.New(rand.NewPCG(uint64(rate), 7))
	// A pool of payloads, so that generating them costs nothing in the loop.
	var pool [][]byte
	for range 256 {
		f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src...)
		f = binary.BigEndian.AppendUint16(f, frame.EtherType)
		f = append(f, gen(r, make([]byte, 4096))...)
		pool = append(pool, f)
	}
	start := time.Now()
	sent := 0
	for {
		el := time.Since(start)
		if el >= d {
			return sent, el
		}
		due := int(el.Seconds() * float64(rate))
		for ; sent < due; sent++ {
			if _, err := unix.Write(fd, pool[sent%len(pool)]); err != nil {
				if err == unix.ENOBUFS || err == unix.EAGAIN {
					break
				}
				fmt.Fprintln(os.Stderr, "flood: write:", err)
				return sent, time.Since(start)
			}
		}
		time.Sleep(time.Millisecond - time.Since(start)%time.Millisecond)
	}
}

// heartbeats keeps the arrival times of each node's LAN 2 frames.
type heartbeats struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (h *heartbeats) record(fd int, macs map[string]net.HardwareAddr) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		now := time.Now()
		if n < 14+4 || buf[14+3] != byte(frame.TypeHeartbeat) {
			continue
		}
		for name, mac := range macs {
			if bytes.Equal(buf[6:12], mac) {
				h.mu.Lock()
				h.at[name] = append(h.at[name], now)
				h.mu.Unlock()
			}
		}
	}
}

func (h *heartbeats) reset() {
	h.mu.Lock()
	h.at = map[string][]time.Time{}
	h.mu.Unlock()
}

// summary gives the median, 99th percentile and largest gap between two
// heartbeats of a node (nominal: the heartbeat interval, 100 ms).
func (h *heartbeats) summary(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ts := h.at[name]
	if len(ts) < 3 {
		return "none"
	}
	var gaps []time.Duration
	for i := 1; i < len(ts); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]))
	}
	slices.Sort(gaps)
	q := func(f float64) time.Duration { return gaps[int(f*float64(len(gaps)-1))].Round(100 * time.Microsecond) }
	return fmt.Sprintf("%v / %v / %v (%d)", q(0.5), q(0.99), gaps[len(gaps)-1].Round(100*time.Microsecond), len(gaps))
}

// openIn opens an AF_PACKET raw socket for EtherType 0x88B5 with a socket
// filter, bound to ifname in namespace ns.
func openIn(ns, ifname string, filter []bpf.RawInstruction) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			ch <- result{err: err}
			return
		}
		proto := int(htons(frame.EtherType))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
		if err != nil {
			ch <- result{err: err}
			return
		}
		prog := make([]unix.SockFilter, len(filter))
		for i, ins := range filter {
			prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			ch <- result{err: err}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(frame.EtherType), Ifindex: ifi.Index}); err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{fd: fd}
	}()
	r := <-ch
	return r.fd, r.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// heartbeatFilter passes the frames of EtherType 0x88B5 sent by a or b.
func heartbeatFilter(a, b net.HardwareAddr) []bpf.RawInstruction {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(frame.EtherType), SkipFalse: 9},
		bpf.LoadAbsolute{Off: 6, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(a[:4]), SkipFalse: 2},
		bpf.LoadAbsolute{Off: 10, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binary.BigEndian.Uint16(a[4:])), SkipTrue: 4, SkipFalse: 0},
		bpf.LoadAbsolute{Off: 6, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(b[:4]), SkipFalse: 3},
		bpf.LoadAbsolute{Off: 10, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binary.BigEndian.Uint16(b[4:])), SkipFalse: 1},
		bpf.RetConstant{Val: 0x40000},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err)
	}
	return prog
}

// dropAll is the filter of the flooding socket: it only sends.
func dropAll() []bpf.RawInstruction {
	prog, _ := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	return prog
}

// cpu returns the CPU time (user and system) of each daemon.
func cpu(pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	}
	return out
}

func pidIn(ns string) (int, error) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(l)
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == "pairguard" {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no pairguard in %s", ns)
}

func counters(p *netns.Pair, n *netns.Node) (map[string]uint64, error) {
	out, err := p.Run(n, "status", "--json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Frames map[string]uint64 `json:"frames"`
	}
	err = json.Unmarshal([]byte(out), &st)
	return st.Frames, err
}

func diff(a, b map[string]uint64) string {
	var parts []string
	for _, k := range []string{"received", "accepted", "short", "magic", "malformed", "forged", "foreign", "replayed", "stale"} {
		if d := b[k] - a[k]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s +%d", k, d))
		}
	}
	return strings.Join(parts, ", ")
}

func pairKey(config string) ([]byte, error) {
	f, err := os.Open(config)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	re := regexp.MustCompile(`^pair-key = "(.*)"$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return []byte(m[1]), nil
		}
	}
	return nil, fmt.Errorf("%s: no pair-key", config)
}

func sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}
