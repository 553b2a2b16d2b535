// Command demo shows a Pairguard pair at work in network namespaces: a main
// and a spare start, the main loses power, the spare takes over. Run it as
// root through `make demo`.
package main

import (
	"crypto/sha256"
	"errors"
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
		if err := p.WriteConfig(n, netns.Options{Datastore: 16 << 20, SyncEvery: time.Second}); err != nil {
			return err
		}
	}
	cfg, _ := os.ReadFile(p.Main.Config)
	fmt.Printf("\nThe main's config (%s):\n%s", p.Main.Config, indent(string(cfg)))
	msg := fmt.Sprintf("order book of %s, written on the main", time.Now().Format(time.RFC3339))
	if err := writeAt(p.Main.Image, 5<<20, msg); err != nil {
		return err
	}
	say("Wrote %q into the main's datastore (%s, 16 MiB image) at offset 5 MiB", msg, p.Main.Image)
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
	if err := waitInSync(p); err != nil {
		return err
	}
	say("The mirror is in sync: main %s, spare %s (sha256 of the images)", sum(p.Main.Image), sum(p.Spare.Image))
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
	got, err := readAt(p.Spare.Image, 5<<20, len(msg))
	if err != nil {
		return err
	}
	say("The spare's datastore at offset 5 MiB holds %q (image sha256 %s)", got, sum(p.Spare.Image))
	if got != msg {
		return fmt.Errorf("the spare's datastore does not hold what the main wrote")
	}
	st, _ := p.Status(p.Spare)
	say("What happened: the main held %s and sent heartbeats over the failover line.\n"+
		"    When its power was cut, the spare missed %d heartbeats, checked LAN 1, ARP-probed the\n"+
		"    address, found it free, raised its epoch to %d and claimed the address.\n"+
		"    The spare became primary %v after the power cut; the client reaches it, and the\n"+
		"    spare's datastore holds the bytes the main wrote, mirrored before the power cut.",
		netns.ServiceAddr, 5, st.Epoch, took.Round(time.Millisecond))
	return nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

func writeAt(path string, off int64, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(text), off); err != nil {
		f.Close()
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

func readAt(path string, off int64, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return "", err
	}
	return string(b), nil
}

func sum(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable"
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))[:16]
}

func waitInSync(p *netns.Pair) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := p.Status(p.Spare)
		if err == nil && st.Mirror.State == "in-sync" && sum(p.Main.Image) == sum(p.Spare.Image) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the mirror did not reach in-sync within 30s")
}
