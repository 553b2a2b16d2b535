package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// Impl is the redundancy software of a bed.
type Impl int

// The two implementations compared.
const (
	Pairguard Impl = iota
	Keepalived
)

// String names the implementation.
func (i Impl) String() string {
	if i == Keepalived {
		return "keepalived"
	}
	return "pairguard"
}

// Setting is one configuration under test.
type Setting struct {
	Name      string
	Impl      Impl
	Interval  time.Duration // pairguard heartbeat.interval or keepalived advert_int (0: default)
	Missed    int           // pairguard heartbeat.missed (keepalived: always 3)
	Extra     string        // appended to pairguard's config
	HB        string        // pairguard: lines added to its [heartbeat] table
	Data      int64         // pairguard: an image-file datastore of this size per node (periodic mode, every SyncEvery)
	SyncEvery time.Duration
	Nice      int // keepalived: vrrp_priority (the VRRP process's nice; 0: as shipped)
}

// detect is the time after which the standby declares the active one dead.
func (s Setting) detect() string {
	if s.Impl == Keepalived {
		// master-down = 3 x advert_int + skew, skew = (256-priority)/256 x advert_int.
		d := 3*s.Interval + s.Interval*time.Duration(256-kaSparePrio)/256
		return fmt.Sprintf("master-down %v", d.Round(100*time.Microsecond))
	}
	iv, m := s.Interval, s.Missed
	if iv == 0 {
		iv, m = 100*time.Millisecond, 5
	}
	return fmt.Sprintf("failover-time %v", iv*time.Duration(m))
}

const kaMainPrio, kaSparePrio = 200, 100

// Bed is one pair (main, spare, client, switch) running one setting.
type Bed struct {
	S        Setting
	P        *netns.Pair
	MainMAC  net.HardwareAddr
	SpareMAC net.HardwareAddr
	ka       map[*netns.Node]*kaProc
}

type kaProc struct {
	cmd  *exec.Cmd
	done chan error
}

// NewBed builds the namespaces of one pair for s.
func NewBed(dir, bin string, s Setting) (*Bed, error) {
	sub, err := os.MkdirTemp(dir, "bed")
	if err != nil {
		return nil, err
	}
	p, err := netns.Setup(sub, bin)
	if err != nil {
		return nil, err
	}
	b := &Bed{S: s, P: p, ka: map[*netns.Node]*kaProc{}}
	if b.MainMAC, err = macOf(p.Main.NS, "eth1"); err == nil {
		b.SpareMAC, err = macOf(p.Spare.NS, "eth1")
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	for _, n := range b.nodes() {
		if err := b.writeConfig(n); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

func (b *Bed) nodes() []*netns.Node { return []*netns.Node{b.P.Main, b.P.Spare} }

func (b *Bed) writeConfig(n *netns.Node) error {
	if b.S.Impl == Pairguard {
		if err := b.P.WriteConfig(n, netns.Options{Interval: b.S.Interval, Missed: b.S.Missed, ConnectionWait: time.Second, Extra: b.S.Extra, Datastore: b.S.Data, SyncEvery: b.S.SyncEvery}); err != nil || b.S.HB == "" {
			return err
		}
		c, err := os.ReadFile(n.Config)
		if err != nil {
			return err
		}
		return os.WriteFile(n.Config, []byte(strings.Replace(string(c), "[heartbeat]\n", "[heartbeat]\n"+b.S.HB, 1)), 0o600)
	}
	advert := b.S.Interval
	if advert == 0 {
		advert = time.Second
	}
	state, prio, src, peer := "MASTER", kaMainPrio, b.P.Main.LAN1, b.P.Spare.LAN1
	if n == b.P.Spare {
		state, prio, src, peer = "BACKUP", kaSparePrio, b.P.Spare.LAN1, b.P.Main.LAN1
	}
	notify := filepath.Join(n.Dir, "notify.sh")
	script := fmt.Sprintf("#!/bin/sh\necho \"$(date +%%s.%%N) $3\" >> %s\n", filepath.Join(n.Dir, "states"))
	if err := os.WriteFile(notify, []byte(script), 0o755); err != nil {
		return err
	}
	nice := ""
	if b.S.Nice != 0 {
		nice = fmt.Sprintf("\tvrrp_priority %d\n", b.S.Nice)
	}
	conf := fmt.Sprintf(`global_defs {
%s	router_id %s
	vrrp_version 3
	script_user root
	enable_script_security
	vrrp_garp_master_delay 0
}
vrrp_instance pg {
	state %s
	interface eth1
	virtual_router_id 77
	priority %d
	advert_int %g
	unicast_src_ip %s
	unicast_peer {
		%s
	}
	virtual_ipaddress {
		%s/24 dev eth1
	}
	notify %s
}
`, nice, n.Name, state, prio, advert.Seconds(), src, peer, netns.ServiceAddr, notify)
	return os.WriteFile(filepath.Join(n.Dir, "keepalived.conf"), []byte(conf), 0o644)
}

func (b *Bed) startKA(n *netns.Node) error {
	logf, err := os.OpenFile(n.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// A SIGKILLed keepalived leaves its pid files; a new one refuses to
	// start while a pid in them looks alive.
	for _, f := range []string{"keepalived.pid", "vrrp.pid", "checkers.pid"} {
		os.Remove(filepath.Join(n.Dir, f))
	}
	cmd := exec.Command("ip", "netns", "exec", n.NS, "keepalived", "--dont-fork", "--log-console", "--vrrp",
		"--use-file", filepath.Join(n.Dir, "keepalived.conf"),
		"--pid", filepath.Join(n.Dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(n.Dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(n.Dir, "checkers.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("lan1: keepalived: %w", err)
	}
	kp := &kaProc{cmd: cmd, done: make(chan error, 1)}
	go func() { kp.done <- cmd.Wait(); logf.Close() }()
	b.ka[n] = kp
	return nil
}

func (b *Bed) killKA(n *netns.Node) {
	kp := b.ka[n]
	if kp == nil {
		return
	}
	// The VRRP child is in the same process group; wait until it is gone.
	child, _ := os.ReadFile(filepath.Join(n.Dir, "vrrp.pid"))
	syscall.Kill(-kp.cmd.Process.Pid, syscall.SIGKILL)
	<-kp.done
	if pid, err := strconv.Atoi(strings.TrimSpace(string(child))); err == nil {
		for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	delete(b.ka, n)
}

// Up powers both nodes on, starts the main then the spare, and waits until
// the main holds the service address and the spare stands by.
func (b *Bed) Up() error {
	for _, n := range b.nodes() {
		if err := b.P.PowerOn(n); err != nil {
			return err
		}
	}
	if b.S.Impl == Pairguard {
		for _, n := range b.nodes() {
			if err := b.P.Start(n); err != nil {
				return err
			}
		}
		if _, err := b.P.WaitRole(b.P.Main, "primary", 10*time.Second); err != nil {
			return err
		}
		_, err := b.P.WaitRole(b.P.Spare, "secondary", 10*time.Second)
		return err
	}
	for _, n := range b.nodes() {
		os.Remove(filepath.Join(n.Dir, "states"))
		if err := b.startKA(n); err != nil {
			return err
		}
	}
	start := time.Now()
	for time.Since(start) < 15*time.Second {
		if b.P.HasAddress(b.P.Main) && b.kaState(b.P.Main) == "MASTER" && !b.P.HasAddress(b.P.Spare) && b.Alive(b.P.Spare) {
			if b.kaState(b.P.Spare) == "BACKUP" {
				return nil
			}
			if time.Since(start) > 5*time.Second {
				// Seen once: the spare's notify script did not record its
				// initial BACKUP state. It stands by all the same.
				fmt.Fprintf(os.Stderr, "lan1: keepalived spare in %s recorded no state after 5s; going on\n", b.P.Spare.NS)
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(b.P.Spare.LogFile)
	return fmt.Errorf("lan1: keepalived pair not formed after 15s: main %q, spare %q; spare's log:\n%s", b.kaState(b.P.Main), b.kaState(b.P.Spare), log)
}

// kaStates returns the states keepalived's notify script recorded on n.
func (b *Bed) kaStates(n *netns.Node) []string {
	f, err := os.Open(filepath.Join(n.Dir, "states"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) == 2 {
			out = append(out, fs[1])
		}
	}
	return out
}

func (b *Bed) kaState(n *netns.Node) string {
	st := b.kaStates(n)
	if len(st) == 0 {
		return ""
	}
	return st[len(st)-1]
}

// PowerOff cuts n's power: links down, the daemon SIGKILLed, the address gone.
//
// Both links go down in one ip process, microseconds apart: one ip
// command per link left LAN 2 (Pairguard's heartbeats) up for the few
// milliseconds the second command took to start, after the client's last
// answer on LAN 1, and counted them in Pairguard's outage.
func (b *Bed) PowerOff(n *netns.Node) error {
	var errs []error
	cmd := exec.Command("ip", "-n", n.NS, "-batch", "-")
	cmd.Stdin = strings.NewReader("link set eth2 down\nlink set eth1 down\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("lan1: links down: %v: %s", err, out))
	}
	if b.S.Impl == Pairguard {
		return errors.Join(append(errs, b.P.PowerOff(n))...)
	}
	b.killKA(n)
	exec.Command("ip", "-n", n.NS, "addr", "del", netns.ServiceAddr+"/24", "dev", "eth1").Run()
	return errors.Join(errs...)
}

// Reset powers both nodes off and forgets their state, for the next run.
func (b *Bed) Reset() error {
	var errs []error
	for _, n := range b.nodes() {
		errs = append(errs, b.PowerOff(n))
		os.RemoveAll(filepath.Join(n.Dir, "state"))
	}
	exec.Command("ip", "-n", b.P.Client, "neigh", "flush", "dev", "eth1").Run()
	return errors.Join(errs...)
}

// IsPrimary reports whether n serves (pairguard: role primary; keepalived:
// the service address is on eth1).
func (b *Bed) IsPrimary(n *netns.Node) (bool, error) {
	if b.S.Impl == Pairguard {
		st, err := b.P.Status(n)
		return st.Role == "primary", err
	}
	return b.P.HasAddress(n), nil
}

// Alive reports whether n's daemon still runs.
func (b *Bed) Alive(n *netns.Node) bool {
	if b.S.Impl == Pairguard {
		_, err := b.P.Status(n)
		return err == nil
	}
	kp := b.ka[n]
	if kp == nil {
		return false
	}
	select {
	case err := <-kp.done:
		kp.done <- err
		return false
	default:
		return true
	}
}

// Logbook returns n's pairguard logbook entries (nil for keepalived).
func (b *Bed) Logbook(n *netns.Node) []map[string]any {
	f, err := os.Open(filepath.Join(n.Dir, "state", "logbook.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// Close stops everything and removes the namespaces (and with them the nft
// tables in them; they are deleted first anyway).
func (b *Bed) Close() error {
	for _, n := range b.nodes() {
		exec.Command("ip", "netns", "exec", n.NS, "nft", "delete", "table", "netdev", "pgloss").Run()
		b.killKA(n)
	}
	return b.P.Close()
}

// Describe returns the addresses, neighbours, states and log tails of the
// bed, for a failure report.
func (b *Bed) Describe() string {
	var sb strings.Builder
	for _, ns := range []string{b.P.Main.NS, b.P.Spare.NS, b.P.Client} {
		a, _ := exec.Command("ip", "-n", ns, "-br", "addr").CombinedOutput()
		ne, _ := exec.Command("ip", "-n", ns, "neigh").CombinedOutput()
		fmt.Fprintf(&sb, "-- %s addr:\n%s-- %s neigh:\n%s", ns, a, ns, ne)
	}
	for _, n := range b.nodes() {
		if b.S.Impl == Keepalived {
			fmt.Fprintf(&sb, "-- %s keepalived states %v\n", n.Name, b.kaStates(n))
		} else if st, err := b.P.Status(n); err == nil {
			fmt.Fprintf(&sb, "-- %s role %s epoch %d peer %s alarms %v\n", n.Name, st.Role, st.Epoch, st.Peer.State, st.Alarms)
		}
		log, _ := os.ReadFile(n.LogFile)
		if len(log) > 1500 {
			log = log[len(log)-1500:]
		}
		fmt.Fprintf(&sb, "-- %s log tail:\n%s\n", n.Name, log)
	}
	return sb.String()
}
