package netns

import (
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

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/control"
)

// The arbiter's namespace: a third box on LAN 1 (port "a1" of br1) running
// `pairguard run` in mode arbiter for the pair.
//
//	  main            spare        client    arbiter
//	eth1  eth2      eth1  eth2      eth1       eth1
//	  |     |         |     |         |          |
//	+-+-----+---------+-----+---------+----------+-+
//	| br1 (LAN 1)  br2 (LAN 2)               switch |
//	+-----------------------------------------------+

// ArbiterAddr is the arbiter's address on LAN 1; nodes reach it at
// ArbiterAddr:ArbiterPort (ArbiterExtra).
const (
	ArbiterAddr = "192.168.77.20"
	ArbiterPort = 7405
)

// ArbiterExtra is the config text (Options.Extra) that makes a node use the
// arbiter.
func ArbiterExtra() string {
	return fmt.Sprintf("\n[arbiter]\naddress = \"%s:%d\"\n", ArbiterAddr, ArbiterPort)
}

// AddArbiter creates the arbiter's namespace on LAN 1 and writes its
// config, with the key `pairguard arbiter-key` prints for the main's
// config (write the nodes' configs first). Start it with Start; remove it
// with CloseArbiter.
func (p *Pair) AddArbiter() (*Node, error) {
	a := &Node{Name: "arbiter", NS: "pg" + p.ID + "-arb", LAN1: ArbiterAddr, Dir: filepath.Join(p.Dir, "arbiter")}
	a.Socket = filepath.Join(a.Dir, "pairguard.sock")
	a.Config = filepath.Join(a.Dir, "pairguard.toml")
	a.LogFile = filepath.Join(a.Dir, "pairguard.log")
	cmds := [][]string{
		{"ip", "netns", "add", a.NS},
		{"ip", "-n", p.Switch, "link", "add", "a1", "type", "veth", "peer", "name", "eth1", "netns", a.NS},
		{"ip", "-n", p.Switch, "link", "set", "a1", "master", "br1", "up"},
		{"ip", "-n", a.NS, "link", "set", "eth1", "up"},
		{"ip", "-n", a.NS, "addr", "add", ArbiterAddr + "/24", "dev", "eth1"},
		{"ip", "-n", a.NS, "link", "set", "lo", "up"},
	}
	for _, c := range cmds {
		if err := sh(c...); err != nil {
			return a, errors.Join(err, p.CloseArbiter(a))
		}
	}
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		return a, errors.Join(err, p.CloseArbiter(a))
	}
	out, err := exec.Command(p.Bin, "arbiter-key", "--config", p.Main.Config).CombinedOutput()
	if err != nil {
		return a, errors.Join(fmt.Errorf("arbiter-key: %v: %s", err, out), p.CloseArbiter(a))
	}
	cfg := fmt.Sprintf("mode = \"arbiter\"\nnode-name = \"arbiter\"\nstate-dir = %q\n\n[control]\nsocket = %q\n\n[arbiter]\nlisten = \"%s:%d\"\n\n[[arbiter.pair]]\nkey = %q\n",
		filepath.Join(a.Dir, "state"), a.Socket, ArbiterAddr, ArbiterPort, strings.TrimSpace(string(out)))
	if err := os.WriteFile(a.Config, []byte(cfg), 0o600); err != nil {
		return a, errors.Join(err, p.CloseArbiter(a))
	}
	return a, nil
}

// CloseArbiter kills the arbiter and removes its namespace.
func (p *Pair) CloseArbiter(a *Node) error {
	if a.proc != nil {
		syscall.Kill(-a.proc.Process.Pid, syscall.SIGKILL)
		<-a.waitErr
		a.proc = nil
	}
	if err := exec.Command("ip", "netns", "del", a.NS).Run(); err != nil {
		if _, serr := os.Stat("/var/run/netns/" + a.NS); serr == nil {
			return fmt.Errorf("ip netns del %s: %w", a.NS, err)
		}
	}
	return nil
}

// Kill ends n's daemon at once (SIGKILL), leaving its links up.
func (p *Pair) Kill(n *Node) {
	if n.proc != nil {
		syscall.Kill(-n.proc.Process.Pid, syscall.SIGKILL)
		<-n.waitErr
		n.proc = nil
	}
}

// ArbiterStatus asks the arbiter for `status --json`.
func (p *Pair) ArbiterStatus(a *Node) (arbiter.ServerStatus, error) {
	var st arbiter.ServerStatus
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := control.Do(ctx, a.Socket, control.Request{Cmd: "status"})
	if err != nil {
		return st, err
	}
	if !resp.OK {
		return st, errors.New(resp.Error)
	}
	err = json.Unmarshal(resp.Data, &st)
	return st, err
}

// cutTable is the nftables bridge table of the switch that drops frames
// between ports (Partition, Isolate).
const cutTable = "pgcut"

// Partition drops every frame between the main's and the spare's ports on
// both LANs at the switch; both still reach the client and the arbiter
// (a firewall between the appliances, port isolation). Heal undoes it.
func (p *Pair) Partition() error {
	var rules []string
	for _, lan := range []string{"1", "2"} {
		m, s := "m"+lan, "s"+lan
		rules = append(rules,
			fmt.Sprintf("iifname %q oifname %q drop", m, s),
			fmt.Sprintf("iifname %q oifname %q drop", s, m))
	}
	return p.nftCut(rules)
}

// Isolate drops every frame to and from n's ports at the switch, with
// their links up: n is cut from the peer, the client and the arbiter.
func (p *Pair) Isolate(n *Node) error {
	var rules []string
	for _, port := range []string{n.Name[:1] + "1", n.Name[:1] + "2"} {
		rules = append(rules, fmt.Sprintf("iifname %q drop", port), fmt.Sprintf("oifname %q drop", port))
	}
	return p.nftCut(rules)
}

// Heal removes the drops of Partition and Isolate.
func (p *Pair) Heal() error {
	return sh("ip", "netns", "exec", p.Switch, "nft", "delete", "table", "bridge", cutTable)
}

func (p *Pair) nftCut(rules []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge %s {\n\tchain pgdrop {\n\t\ttype filter hook forward priority 0; policy accept;\n", cutTable)
	for _, r := range rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n}\n")
	cmd := exec.Command("ip", "netns", "exec", p.Switch, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s\n%s", err, strings.TrimSpace(string(out)), b.String())
	}
	return nil
}

// NftAvailable reports why the switch cannot drop frames between ports
// ("" if it can).
func NftAvailable() string {
	if _, err := exec.LookPath("nft"); err != nil {
		return "nftables (nft) is not installed"
	}
	return ""
}
