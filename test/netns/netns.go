// Package netns builds a Pairguard pair in Linux network namespaces: a main,
// a spare, a LAN 1 client and a switch namespace holding a LAN 1 bridge and
// a LAN 2 bridge (the failover line goes through a switch, as the seeds
// require). It runs real `pairguard run` daemons in them. Everything it
// creates is named with the prefix "pg" and removed by Close.
//
//	  main            spare           client
//	eth1  eth2      eth1  eth2         eth1
//	  |     |         |     |            |
//	+-+-----+---------+-----+------------+-+
//	| br1 (LAN 1)  br2 (LAN 2)      switch |
//	+--------------------------------------+
package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/firmware/control"
)

// Addresses of the topology.
const (
	ServiceAddr = "192.168.77.10"
	ClientAddr  = "192.168.77.100"
	WitnessAddr = ClientAddr // the client answers ARP: a witness for tests
)

// Node is one appliance of the pair.
type Node struct {
	Name    string // "main" or "spare"
	NS      string // network namespace
	LAN1    string // LAN 1 address (management)
	LAN2    string // LAN 2 address
	Dir     string // state dir, config, socket, log
	Socket  string
	Config  string
	LogFile string
	Image   string // the datastore image, when configured
	Mode    string // main or spare ("" : the name)
	proc    *exec.Cmd
	waitErr chan error
}

// Pair is the whole topology.
type Pair struct {
	ID     string
	Switch string // switch namespace
	Client string // client namespace
	Main   *Node
	Spare  *Node
	Bin    string // the pairguard binary
	Dir    string
	Extra  []*Node // more units on the same switch (AddNode)
}

// Available reports why namespaces cannot be used here ("" if they can).
func Available() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2 (ip) is not installed"
	}
	name := fmt.Sprintf("pgprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add failed: %s", bytes.TrimSpace(out))
	}
	exec.Command("ip", "netns", "del", name).Run()
	return ""
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Setup creates the namespaces, bridges and links. dir holds the nodes'
// files; bin is the pairguard binary.
func Setup(dir, bin string) (*Pair, error) {
	id := fmt.Sprintf("%04x", os.Getpid()&0xffff^int(time.Now().UnixNano()&0xffff))
	p := &Pair{ID: id, Switch: "pg" + id + "-sw", Client: "pg" + id + "-client", Bin: bin, Dir: dir}
	p.Main = &Node{Name: "main", NS: "pg" + id + "-main", LAN1: "192.168.77.11", LAN2: "10.77.0.1"}
	p.Spare = &Node{Name: "spare", NS: "pg" + id + "-spare", LAN1: "192.168.77.12", LAN2: "10.77.0.2"}
	if err := p.build(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Pair) build() error {
	cmds := [][]string{
		{"ip", "netns", "add", p.Switch},
		{"ip", "netns", "add", p.Client},
		{"ip", "netns", "add", p.Main.NS},
		{"ip", "netns", "add", p.Spare.NS},
		{"ip", "-n", p.Switch, "link", "add", "br1", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"ip", "-n", p.Switch, "link", "add", "br2", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"ip", "-n", p.Switch, "link", "set", "br1", "up"},
		{"ip", "-n", p.Switch, "link", "set", "br2", "up"},
	}
	plug := func(ns, ifname, port, bridge string) {
		cmds = append(cmds,
			[]string{"ip", "-n", p.Switch, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns},
			[]string{"ip", "-n", p.Switch, "link", "set", port, "master", bridge, "up"},
			[]string{"ip", "-n", ns, "link", "set", ifname, "up"},
		)
	}
	for _, n := range []*Node{p.Main, p.Spare} {
		plug(n.NS, "eth1", n.Name[:1]+"1", "br1")
		plug(n.NS, "eth2", n.Name[:1]+"2", "br2")
		cmds = append(cmds,
			[]string{"ip", "-n", n.NS, "addr", "add", n.LAN1 + "/24", "dev", "eth1"},
			[]string{"ip", "-n", n.NS, "addr", "add", n.LAN2 + "/24", "dev", "eth2"},
			[]string{"ip", "-n", n.NS, "link", "set", "lo", "up"},
		)
	}
	plug(p.Client, "eth1", "c1", "br1")
	cmds = append(cmds,
		[]string{"ip", "-n", p.Client, "addr", "add", ClientAddr + "/24", "dev", "eth1"},
		[]string{"ip", "-n", p.Client, "link", "set", "lo", "up"},
	)
	for _, c := range cmds {
		if err := sh(c...); err != nil {
			return err
		}
	}
	for _, n := range []*Node{p.Main, p.Spare} {
		n.Dir = filepath.Join(p.Dir, n.Name)
		if err := os.MkdirAll(filepath.Join(n.Dir, "hooks.d"), 0o755); err != nil {
			return err
		}
		n.Socket = filepath.Join(n.Dir, "pairguard.sock")
		n.Config = filepath.Join(n.Dir, "pairguard.toml")
		n.LogFile = filepath.Join(n.Dir, "pairguard.log")
	}
	return nil
}

// Options are the config values a test varies.
type Options struct {
	Interval       time.Duration // heartbeat.interval (0: default)
	Missed         int
	ConnectionWait time.Duration
	Recovery       string
	Witness        string
	OnLineLoss     string
	VirtualMAC     bool
	Service6       string // service-address6
	Datastore      int64  // size of an image-file datastore per node (0: none)
	SyncEvery      time.Duration
	Extra          string // appended to the config
	// NoPairKey leaves pair-key out: the node is taught in (pair begin/join).
	NoPairKey bool
	// Minimal writes what a taught-in spare needs and nothing more: mode,
	// interfaces, LAN 2 address (no service address, no timers).
	Minimal bool
}

// WriteConfig writes n's config file.
func (p *Pair) WriteConfig(n *Node, o Options) error {
	mode := n.Name
	if n.Mode != "" {
		mode = n.Mode
	}
	if o.Minimal {
		return p.writeMinimal(n, mode)
	}
	peer := p.Spare.LAN2
	if n == p.Spare {
		peer = p.Main.LAN2
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode = %q\nnode-name = %q\nstate-dir = %q\n", mode, n.Name, filepath.Join(n.Dir, "state"))
	if !o.NoPairKey {
		b.WriteString("pair-key = \"pg-test-pair-key-0123456789\"\n")
	}
	if o.Recovery != "" {
		fmt.Fprintf(&b, "recovery = %q\n", o.Recovery)
	}
	if o.OnLineLoss != "" {
		fmt.Fprintf(&b, "on-line-loss = %q\n", o.OnLineLoss)
	}
	fmt.Fprintf(&b, "\n[control]\nsocket = %q\n", n.Socket)
	fmt.Fprintf(&b, "\n[lan1]\ninterface = \"eth1\"\nservice-address = \"%s/24\"\n", ServiceAddr)
	if o.Witness != "" {
		fmt.Fprintf(&b, "witness = %q\nwitness-interval = \"200ms\"\n", o.Witness)
	}
	if o.VirtualMAC {
		b.WriteString("virtual-mac = true\n")
	}
	if o.Service6 != "" {
		fmt.Fprintf(&b, "service-address6 = %q\n", o.Service6)
	}
	fmt.Fprintf(&b, "\n[lan2]\ninterface = \"eth2\"\naddress = \"%s/24\"\npeer-address = %q\n", n.LAN2, peer)
	b.WriteString("\n[heartbeat]\n")
	if o.Interval > 0 {
		fmt.Fprintf(&b, "interval = %q\n", o.Interval.String())
	}
	if o.Missed > 0 {
		fmt.Fprintf(&b, "missed = %d\n", o.Missed)
	}
	cw := o.ConnectionWait
	if cw == 0 {
		cw = 3 * time.Second
	}
	fmt.Fprintf(&b, "connection-wait-time = %q\n", cw.String())
	fmt.Fprintf(&b, "\n[hooks]\ndir = %q\ntimeout = \"5s\"\n", filepath.Join(n.Dir, "hooks.d"))
	if o.Datastore > 0 {
		n.Image = filepath.Join(n.Dir, "datastore.img")
		if _, err := os.Stat(n.Image); err != nil {
			f, err := os.Create(n.Image)
			if err != nil {
				return err
			}
			err = errors.Join(f.Truncate(o.Datastore), f.Close())
			if err != nil {
				return err
			}
		}
		every := o.SyncEvery
		if every == 0 {
			every = time.Second
		}
		fmt.Fprintf(&b, "\n[datastore]\ndevice = %q\nmode = \"periodic\"\ninterval = %q\n", n.Image, every.String())
	}
	b.WriteString(o.Extra)
	return os.WriteFile(n.Config, []byte(b.String()), 0o600)
}

// Start runs the daemon of n in its namespace.
func (p *Pair) Start(n *Node) error {
	logf, err := os.OpenFile(n.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", n.NS, p.Bin, "run", "--config", n.Config, "--log-level", logLevel())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.proc = cmd
	n.waitErr = make(chan error, 1)
	go func() { n.waitErr <- cmd.Wait(); logf.Close() }()
	// Wait for the control socket.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := p.Status(n); err == nil {
			return nil
		}
		select {
		case err := <-n.waitErr:
			n.proc = nil
			log, _ := os.ReadFile(n.LogFile)
			return fmt.Errorf("%s exited at start: %v\n%s", n.Name, err, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: no control socket after 10s", n.Name)
}

func logLevel() string {
	if l := os.Getenv("PAIRGUARD_TEST_LOG"); l != "" {
		return l
	}
	return "info"
}

// Signal sends sig to n's daemon.
func (n *Node) Signal(sig syscall.Signal) error {
	if n.proc == nil {
		return errors.New(n.Name + " is not running")
	}
	return n.proc.Process.Signal(sig)
}

// Running reports whether n's daemon runs.
func (n *Node) Running() bool { return n.proc != nil }

// PowerOff cuts n's power: its links go down and the daemon is killed at
// once, with no chance to release anything or say goodbye.
func (p *Pair) PowerOff(n *Node) error {
	var errs []error
	for _, ifn := range []string{"eth1", "eth2"} {
		errs = append(errs, sh("ip", "-n", n.NS, "link", "set", ifn, "down"))
	}
	if n.proc != nil {
		syscall.Kill(-n.proc.Process.Pid, syscall.SIGKILL)
		<-n.waitErr
		n.proc = nil
	}
	// The address dies with the power: a rebooted node comes up without it.
	exec.Command("ip", "-n", n.NS, "addr", "del", ServiceAddr+"/24", "dev", "eth1").Run()
	return errors.Join(errs...)
}

// PowerOn brings n's links up again (the daemon is started separately).
func (p *Pair) PowerOn(n *Node) error {
	return errors.Join(sh("ip", "-n", n.NS, "link", "set", "eth1", "up"), sh("ip", "-n", n.NS, "link", "set", "eth2", "up"))
}

// Stop sends SIGTERM and waits for the daemon to exit.
func (p *Pair) Stop(n *Node) error {
	if n.proc == nil {
		return nil
	}
	syscall.Kill(n.proc.Process.Pid, syscall.SIGTERM)
	// ip netns exec execs the binary, so the pid is the daemon's.
	select {
	case err := <-n.waitErr:
		n.proc = nil
		return err
	case <-time.After(20 * time.Second):
		syscall.Kill(-n.proc.Process.Pid, syscall.SIGKILL)
		<-n.waitErr
		n.proc = nil
		return fmt.Errorf("%s did not stop within 20s", n.Name)
	}
}

// CutLine cuts (or restores) a node's failover-line port at the switch.
func (p *Pair) CutLine(n *Node, cut bool) error {
	state := "up"
	if cut {
		state = "down"
	}
	return sh("ip", "-n", p.Switch, "link", "set", n.Name[:1]+"2", state)
}

// CutLAN1 cuts (or restores) a node's LAN 1 port at the switch.
func (p *Pair) CutLAN1(n *Node, cut bool) error {
	state := "up"
	if cut {
		state = "down"
	}
	return sh("ip", "-n", p.Switch, "link", "set", n.Name[:1]+"1", state)
}

// Status is the part of `status --json` the tests read.
type Status struct {
	Mode   string `json:"mode"`
	Role   string `json:"role"`
	Epoch  uint64 `json:"epoch"`
	NodeID string `json:"node-id"`
	Peer   struct {
		State  string `json:"state"`
		Missed int    `json:"missed"`
		Seq    uint64 `json:"seq"`
	} `json:"peer"`
	Data struct {
		State      string `json:"state"`
		Generation string `json:"generation"`
	} `json:"data"`
	Mirror struct {
		State   string  `json:"state"`
		Percent float64 `json:"percent"`
	} `json:"mirror"`
	Alarms  []string `json:"alarms"`
	Address struct {
		Held bool `json:"held"`
	} `json:"address"`
	Failover bool `json:"failover-led"`
	// LastTakeover is this node's last change to primary.
	LastTakeover *struct {
		At     time.Time `json:"at"`
		Reason string    `json:"reason"`
	} `json:"last-takeover"`
	// Arbiter is there only on a node with an arbiter (ArbiterExtra).
	Arbiter *struct {
		State   string `json:"state"`
		Holder  string `json:"holder"`
		LeaseMS int64  `json:"lease-ms"`
	} `json:"arbiter"`
	Pairing *struct {
		State string `json:"state"`
		Step  string `json:"step"`
		Code  string `json:"code"`
		Check string `json:"check"`
		Peer  *struct {
			Name   string `json:"name"`
			NodeID string `json:"node-id"`
		} `json:"peer"`
	} `json:"pairing"`
	Frames struct {
		Sent     uint64 `json:"sent"`
		Accepted uint64 `json:"accepted"`
		Forged   uint64 `json:"forged"`
		Replayed uint64 `json:"replayed"`
		Foreign  uint64 `json:"foreign"`
	} `json:"frames"`
}

// Status asks n's daemon for `status --json`.
func (p *Pair) Status(n *Node) (Status, error) {
	var st Status
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := control.Do(ctx, n.Socket, control.Request{Cmd: "status"})
	if err != nil {
		return st, err
	}
	if !resp.OK {
		return st, errors.New(resp.Error)
	}
	err = json.Unmarshal(resp.Data, &st)
	return st, err
}

// Run runs a pairguard client command against n's daemon.
func (p *Pair) Run(n *Node, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Bin, args...)
	cmd.Env = append(os.Environ(), "PAIRGUARD_SOCKET="+n.Socket)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pairguard %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// WaitRole polls n until its role is role or timeout passes; it returns the
// time it took.
func (p *Pair) WaitRole(n *Node, role string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var last Status
	for time.Since(start) < timeout {
		st, err := p.Status(n)
		if err == nil && st.Role == role {
			return time.Since(start), nil
		}
		last = st
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("%s is %q after %v, want %q (alarms %v)", n.Name, last.Role, timeout, role, last.Alarms)
}

// Exec runs a command in a namespace and returns its output.
func Exec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// HasAddress reports whether n has the service address on eth1.
func (p *Pair) HasAddress(n *Node) bool {
	out, _ := exec.Command("ip", "-n", n.NS, "-4", "addr", "show").CombinedOutput()
	return strings.Contains(string(out), ServiceAddr+"/")
}

// Close stops the daemons and removes every namespace.
func (p *Pair) Close() error {
	for _, n := range append([]*Node{p.Main, p.Spare}, p.Extra...) {
		if n != nil && n.proc != nil {
			syscall.Kill(-n.proc.Process.Pid, syscall.SIGKILL)
			<-n.waitErr
			n.proc = nil
		}
	}
	var errs []error
	nss := []string{p.Switch, p.Client, p.Main.NS, p.Spare.NS}
	for _, n := range p.Extra {
		nss = append(nss, n.NS)
	}
	for _, ns := range nss {
		if err := exec.Command("ip", "netns", "del", ns).Run(); err != nil {
			if _, serr := os.Stat("/var/run/netns/" + ns); serr == nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %w", ns, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Build compiles pairguard into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "pairguard")
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", bin, "./firmware/cmd/pairguard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// writeMinimal writes the config of a taught-in spare: mode, interfaces,
// the LAN 2 address, and the test's own control socket, state dir and
// hooks dir. Everything pair-level comes from the main.
func (p *Pair) writeMinimal(n *Node, mode string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "mode = %q\nnode-name = %q\nstate-dir = %q\n", mode, n.Name, filepath.Join(n.Dir, "state"))
	fmt.Fprintf(&b, "\n[control]\nsocket = %q\n", n.Socket)
	b.WriteString("\n[lan1]\ninterface = \"eth1\"\n")
	fmt.Fprintf(&b, "\n[lan2]\ninterface = \"eth2\"\naddress = \"%s/24\"\n", n.LAN2)
	fmt.Fprintf(&b, "\n[hooks]\ndir = %q\n", filepath.Join(n.Dir, "hooks.d"))
	return os.WriteFile(n.Config, []byte(b.String()), 0o600)
}

// AddNode puts one more unit on the same switch (LAN 1 and LAN 2), named
// name (its namespace, files and switch ports follow it), in mode mode;
// host is the last byte of its addresses. Close removes it.
func (p *Pair) AddNode(name, mode string, host int) (*Node, error) {
	n := &Node{Name: name, Mode: mode, NS: "pg" + p.ID + "-" + name,
		LAN1: fmt.Sprintf("192.168.77.%d", host), LAN2: fmt.Sprintf("10.77.0.%d", host)}
	p.Extra = append(p.Extra, n)
	port := fmt.Sprintf("x%d", host)
	cmds := [][]string{{"ip", "netns", "add", n.NS}}
	for _, l := range []struct{ ifname, port, bridge, addr string }{
		{"eth1", port + "a", "br1", n.LAN1}, {"eth2", port + "b", "br2", n.LAN2},
	} {
		cmds = append(cmds,
			[]string{"ip", "-n", p.Switch, "link", "add", l.port, "type", "veth", "peer", "name", l.ifname, "netns", n.NS},
			[]string{"ip", "-n", p.Switch, "link", "set", l.port, "master", l.bridge, "up"},
			[]string{"ip", "-n", n.NS, "link", "set", l.ifname, "up"},
			[]string{"ip", "-n", n.NS, "addr", "add", l.addr + "/24", "dev", l.ifname},
		)
	}
	cmds = append(cmds, []string{"ip", "-n", n.NS, "link", "set", "lo", "up"})
	for _, c := range cmds {
		if err := sh(c...); err != nil {
			return nil, err
		}
	}
	n.Dir = filepath.Join(p.Dir, n.Name)
	if err := os.MkdirAll(filepath.Join(n.Dir, "hooks.d"), 0o755); err != nil {
		return nil, err
	}
	n.Socket = filepath.Join(n.Dir, "pairguard.sock")
	n.Config = filepath.Join(n.Dir, "pairguard.toml")
	n.LogFile = filepath.Join(n.Dir, "pairguard.log")
	return n, nil
}
