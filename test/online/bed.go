// Package online holds what the benchmark and the namespace tests of the
// online replication use: two network namespaces joined by a veth pair
// (optionally shaped with tc tbf) with pgonline nodes started in them, for
// the benchmark, and a minimal NBD client that knows which writes were
// acknowledged (test/pair's TestOnlinePowerLoss, on real daemons).
package online

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Addresses on the veth pair.
const (
	MainAddr  = "10.99.77.1"
	SpareAddr = "10.99.77.2"
	Port      = "7788"
)

// Bed is two namespaces, "main" and "spare", on one veth link.
type Bed struct {
	Main, Spare string
	Dir         string
	Bin         string
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Build compiles pgonline into dir.
func Build(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "pgonline")
	cmd := exec.Command("go", "build", "-o", bin, "./test/online/pgonline")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build pgonline: %w: %s", err, out)
	}
	return bin, nil
}

// NewBed creates the namespaces (names "pg" and a random suffix). rate,
// if not empty (e.g. "1gbit"), shapes both directions with tc tbf.
func NewBed(dir, bin, rate string) (*Bed, error) {
	var r [3]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	b := &Bed{Main: "pgom" + id, Spare: "pgos" + id, Dir: dir, Bin: bin}
	va, vb := "pgva"+id, "pgvb"+id
	steps := [][]string{
		{"ip", "netns", "add", b.Main},
		{"ip", "netns", "add", b.Spare},
		{"ip", "link", "add", va, "netns", b.Main, "type", "veth", "peer", "name", vb, "netns", b.Spare},
		{"ip", "-n", b.Main, "addr", "add", MainAddr + "/24", "dev", va},
		{"ip", "-n", b.Spare, "addr", "add", SpareAddr + "/24", "dev", vb},
		{"ip", "-n", b.Main, "link", "set", va, "up"},
		{"ip", "-n", b.Spare, "link", "set", vb, "up"},
		{"ip", "-n", b.Main, "link", "set", "lo", "up"},
		{"ip", "-n", b.Spare, "link", "set", "lo", "up"},
	}
	if rate != "" {
		for _, x := range [][2]string{{b.Main, va}, {b.Spare, vb}} {
			steps = append(steps, []string{"ip", "netns", "exec", x[0], "tc", "qdisc", "add", "dev", x[1], "root", "tbf",
				"rate", rate, "burst", "256kb", "latency", "10ms"})
		}
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// Close removes the namespaces (the veth goes with them).
func (b *Bed) Close() error {
	e1 := exec.Command("ip", "netns", "del", b.Main).Run()
	e2 := exec.Command("ip", "netns", "del", b.Spare).Run()
	if e1 != nil {
		return e1
	}
	return e2
}

// Node is a running pgonline.
type Node struct {
	Cmd    *exec.Cmd
	Lines  chan string
	Socket string
	Log    string
}

// Start runs pgonline in namespace ns with args, and waits for its
// "ready" line.
func (b *Bed) Start(ns, name string, args ...string) (*Node, error) {
	logPath := filepath.Join(b.Dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, b.Bin}, args...)...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &Node{Cmd: cmd, Lines: make(chan string, 8), Log: logPath}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n.Lines <- sc.Text()
		}
		close(n.Lines)
		logf.Close()
	}()
	return n, n.Wait("ready", 60*time.Second)
}

// Wait waits for a line from the node.
func (n *Node) Wait(line string, timeout time.Duration) error {
	t := time.After(timeout)
	for {
		select {
		case l, ok := <-n.Lines:
			if !ok {
				log, _ := os.ReadFile(n.Log)
				return fmt.Errorf("pgonline exited before %q: %s", line, tail(string(log)))
			}
			if l == line {
				return nil
			}
		case <-t:
			return fmt.Errorf("pgonline: no %q within %v", line, timeout)
		}
	}
}

func tail(s string) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-20):], "\n")
}

// Kill is the power cut: SIGKILL, nothing flushed.
func (n *Node) Kill() {
	n.Cmd.Process.Signal(syscall.SIGKILL)
	n.Cmd.Wait()
}

// Stop ends the node with SIGTERM.
func (n *Node) Stop() {
	n.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.Kill()
	}
}
