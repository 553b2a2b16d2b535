// Command demo shows a Pairguard pair at work in network namespaces: a main
// and a spare start, the main loses power, the spare takes over. Run it as
// root through `make demo`.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run() error {
	if why := netns.Available(); why != "" {
		return fmt.Errorf("cannot run: %s", why)
	}
	dir, err := os.MkdirTemp("", "pg-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say("Building pairguard")
	bin, err := netns.Build(dir)
	if err != nil {
		return err
	}
	say("Setting up a main, a spare, a LAN 1 client and a switch in network namespaces")
	p, err := netns.Setup(dir, bin)
	if err != nil {
		return err
	}
	defer func() {
		p.Close()
		say("Cleaned up: namespaces %s-* removed", "pg"+p.ID)
	}()
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.WriteConfig(n, netns.Options{}); err != nil {
			return err
		}
	}
	cfg, _ := os.ReadFile(p.Main.Config)
	fmt.Printf("\nThe main's config (%s):\n%s", p.Main.Config, indent(string(cfg)))
	say("Starting both daemons")
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if err := p.Start(n); err != nil {
			return err
		}
	}
	if _, err := p.WaitRole(p.Main, "primary", 10*time.Second); err != nil {
		return err
	}
	if _, err := p.WaitRole(p.Spare, "secondary", 5*time.Second); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		out, _ := p.Run(n, "status")
		fmt.Printf("\n%s: pairguard status\n%s", n.Name, indent(out))
	}
	out, err := netns.Exec(p.Client, "ping", "-c", "2", "-i", "0.2", netns.ServiceAddr)
	say("The client pings the service address %s (held by the main):\n%s", netns.ServiceAddr, indent(out))
	if err != nil {
		return fmt.Errorf("client ping: %w", err)
	}

	say("Cutting the main's power: its links go down and its daemon is killed")
	start := time.Now()
	if err := p.PowerOff(p.Main); err != nil {
		return err
	}
	if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
		return err
	}
	took := time.Since(start)
	out, _ = p.Run(p.Spare, "status")
	fmt.Printf("\nspare: pairguard status\n%s", indent(out))
	out, _ = p.Run(p.Spare, "log", "-n", "8")
	fmt.Printf("\nspare: pairguard log -n 8\n%s", indent(out))
	out, err = netns.Exec(p.Client, "ping", "-c", "2", "-i", "0.2", netns.ServiceAddr)
	say("The client pings %s again (now held by the spare):\n%s", netns.ServiceAddr, indent(out))
	if err != nil {
		return fmt.Errorf("client ping after takeover: %w", err)
	}
	st, _ := p.Status(p.Spare)
	say("What happened: the main held %s and sent heartbeats over the failover line.\n"+
		"    When its power was cut, the spare missed %d heartbeats, checked LAN 1, ARP-probed the\n"+
		"    address, found it free, raised its epoch to %d and claimed the address.\n"+
		"    The spare became primary %v after the power cut; the client reaches it.",
		netns.ServiceAddr, 5, st.Epoch, took.Round(time.Millisecond))
	return nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}
