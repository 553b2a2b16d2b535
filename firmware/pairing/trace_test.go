package pairing

import (
	"bufio"
	"crypto/ed25519"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected traces in testdata/*.trace")

// TestTraces runs the stories in testdata/*.script on a main and a spare
// with seeded randomness and compares what they do with testdata/*.trace.
// Run with -rewrite to accept a new trace after reading its diff.
//
// Script lines: "main begin", "spare join [wrong]", "<node> accept",
// "<node> reject", "<node> cancel", "<node> unpair", "drop <kind>" (drop
// the next message of that kind), "tick <duration>", and # comments.
func TestTraces(t *testing.T) {
	scripts, _ := filepath.Glob("testdata/*.script")
	if len(scripts) == 0 {
		t.Fatal("no scripts")
	}
	for _, script := range scripts {
		name := strings.TrimSuffix(filepath.Base(script), ".script")
		t.Run(name, func(t *testing.T) {
			got := runScript(t, script)
			want := strings.TrimSuffix(script, ".script") + ".trace"
			if *rewrite {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run with -rewrite to create it)", err)
			}
			if string(b) != got {
				t.Errorf("trace differs from %s; got:\n%s", want, got)
			}
		})
	}
}

func seededConfig(t *testing.T, role Role, id uint64, name string, seed byte) Config {
	r := rand.NewChaCha8([32]byte{seed})
	pub, _, err := ed25519.GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Role: role, NodeID: id, NodeName: name, Software: "1.4.0", Key: pub, Rand: r}
	if role == RoleMain {
		cfg.Settings = testSettings()
	}
	return cfg
}

func runScript(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := newSim(t, seededConfig(t, RoleMain, mainID, "main-a", 1), seededConfig(t, RoleSpare, spareID, "spare-b", 2))
	start := n.now
	names := map[uint64]string{mainID: "main", spareID: "spare", 0: "all"}
	ids := map[string]uint64{"main": mainID, "spare": spareID}
	var out strings.Builder
	drop := map[Kind]bool{}
	n.tamper = func(e *envelope) bool {
		if drop[e.msg.Kind] {
			drop[e.msg.Kind] = false
			n.hist = append(n.hist, histEntry{e.from, dropped{e.msg}})
			return true
		}
		return false
	}
	// Print the actions in the order they happened; a run of identical
	// lines (repeats) is printed once with a count.
	seen := 0
	flushActs := func() {
		var prev string
		count := 0
		emit := func() {
			if count > 1 {
				fmt.Fprintf(&out, "%s  ×%d\n", prev, count)
			} else if count == 1 {
				fmt.Fprintf(&out, "%s\n", prev)
			}
		}
		for _, h := range n.hist[seen:] {
			line := fmt.Sprintf("  %-5s %s", names[h.id], describe(h.a, names))
			if line == prev {
				count++
				continue
			}
			emit()
			prev, count = line, 1
		}
		emit()
		seen = len(n.hist)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fmt.Fprintf(&out, "> %s  [+%v]\n", line, n.now-start)
		w := strings.Fields(line)
		var err error
		switch {
		case w[0] == "tick":
			d, perr := time.ParseDuration(w[1])
			if perr != nil {
				t.Fatal(perr)
			}
			n.run(d)
		case w[0] == "drop":
			for k := KindHello; k <= KindAbort; k++ {
				if k.String() == w[1] {
					drop[k] = true
				}
			}
		case w[1] == "begin":
			err = n.step(ids[w[0]], Begin{})
		case w[1] == "join":
			code := Code("")
			if ms := n.node(mainID).m.Status(); ms.Code != "" {
				code = ms.Code
			} else {
				code = "12345678"
			}
			if len(w) > 2 && w[2] == "wrong" {
				code = wrongCode(code)
			}
			err = n.step(ids[w[0]], Join{Code: code})
		case w[1] == "accept":
			err = n.step(ids[w[0]], Accept{})
		case w[1] == "reject":
			err = n.step(ids[w[0]], Reject{})
		case w[1] == "cancel":
			err = n.step(ids[w[0]], Cancel{})
		case w[1] == "unpair":
			err = n.step(ids[w[0]], Unpair{})
		default:
			t.Fatalf("%s: unknown line %q", path, line)
		}
		flushActs()
		if err != nil {
			fmt.Fprintf(&out, "  error: %v\n", err)
		}
		for _, id := range n.order {
			s := n.nodes[id].m.Status()
			fmt.Fprintf(&out, "  = %-5s %s", names[id], s.State)
			if s.Check != "" {
				fmt.Fprintf(&out, " check %s", s.Check)
			}
			if s.Code != "" {
				fmt.Fprintf(&out, " code %s", s.Code)
			}
			out.WriteString("\n")
		}
	}
	return out.String()
}

// dropped marks, in the history, a message the script dropped.
type dropped struct{ msg Message }

func (dropped) isAction() {}

func describe(a Action, names map[uint64]string) string {
	switch a := a.(type) {
	case dropped:
		return fmt.Sprintf("(%s →%s lost)", a.msg.Kind, names[a.msg.To])
	case Send:
		s := fmt.Sprintf("send %s →%s", a.Msg.Kind, names[a.To])
		if a.Msg.Reason != reasonInvalid {
			s += " (" + a.Msg.Reason.String() + ")"
		}
		return s
	case Persist:
		return fmt.Sprintf("persist peer %016x %q", a.Record.Peer.NodeID, a.Record.Peer.Name)
	case Forget:
		return "forget"
	case StateChanged:
		return fmt.Sprintf("state %s → %s: %s", a.Prev, a.State, a.Reason)
	case Log:
		return "log: " + a.Message
	}
	return fmt.Sprintf("%T", a)
}
