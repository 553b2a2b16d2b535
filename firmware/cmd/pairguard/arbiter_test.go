package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
	"github.com/pairguard/pairguard/firmware/pairing"
)

const nodeConfig = `mode = "spare"
pair-key = "arbiter-key-test-pair-key"
[lan1]
interface = "l1"
[lan2]
interface = "l2"
[arbiter]
address = "192.0.2.7"
`

// `arbiter-key` prints the derived key, which an arbiter's config accepts.
func TestArbiterKeyCommand(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(node, []byte(nodeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), "arbiter-key", []string{"--config", node}, &out); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out.String())
	if want := arbiter.FormatKey(arbiter.DeriveKey([]byte("arbiter-key-test-pair-key"))); key != want {
		t.Fatalf("arbiter-key printed %q, want %q", key, want)
	}
	if strings.Contains(out.String(), "arbiter-key-test-pair-key") {
		t.Fatal("arbiter-key printed the pair key")
	}
	arb := filepath.Join(dir, "arbiter.toml")
	os.WriteFile(arb, []byte(fmt.Sprintf("mode = \"arbiter\"\nstate-dir = %q\n[[arbiter.pair]]\nkey = %q\n", dir, key)), 0o600)
	out.Reset()
	if err := run(context.Background(), "check-config", []string{arb}, &out); err != nil || !strings.Contains(out.String(), "mode arbiter") {
		t.Fatalf("check-config of the arbiter: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), "check-config", []string{node}, &out); err != nil {
		t.Fatalf("check-config of a node with an arbiter: %v", err)
	}
	if err := run(context.Background(), "arbiter-key", []string{"--config", arb}, &out); err == nil {
		t.Error("arbiter-key accepted the arbiter's own config")
	}
}

// An arbiter's control socket answers status with its pairs, and a reload
// changes the pairs served.
func TestArbiterModeStatus(t *testing.T) {
	dir := t.TempDir()
	k1 := arbiter.FormatKey(arbiter.DeriveKey([]byte("arbiter-key-test-pair-key")))
	k2 := arbiter.FormatKey(arbiter.DeriveKey([]byte("a second pair's key, long")))
	src := fmt.Sprintf("mode = \"arbiter\"\nstate-dir = %q\n[control]\nsocket = %q\n[arbiter]\nlisten = \"127.0.0.1:0\"\n[[arbiter.pair]]\nkey = %q\n",
		filepath.Join(dir, "state"), filepath.Join(dir, "pg.sock"), k1)
	cfg, err := config.Parse("arbiter.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := daemon.OpenArbiter(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.Listen(cfg.Control.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { serveArbiter(ctx, a, srv, filepath.Join(dir, "none.toml"), log) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	status := func() arbiter.ServerStatus {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), "status", []string{"--json", "--socket", cfg.Control.Socket}, &out); err != nil {
			t.Fatal(err)
		}
		var st arbiter.ServerStatus
		if err := json.Unmarshal(out.Bytes(), &st); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		return st
	}
	st := status()
	if st.Mode != "arbiter" || !st.Starting || len(st.Pairs) != 1 || st.Pairs[0].Pair != fmt.Sprintf("%08x", arbiter.PairID(arbiter.DeriveKey([]byte("arbiter-key-test-pair-key")))) {
		t.Fatalf("status %+v", st)
	}
	var out bytes.Buffer
	if err := run(context.Background(), "status", []string{"--socket", cfg.Control.Socket}, &out); err != nil || !strings.Contains(out.String(), "pair      ") {
		t.Errorf("text status: %v\n%s", err, out.String())
	}
	if err := run(context.Background(), "swap", []string{"--socket", cfg.Control.Socket}, &out); err == nil || !strings.Contains(err.Error(), "arbiter") {
		t.Errorf("swap on an arbiter: %v", err)
	}

	next, err := config.Parse("arbiter.toml", []byte(src+fmt.Sprintf("[[arbiter.pair]]\nkey = %q\n", k2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(next); err != nil {
		t.Fatal(err)
	}
	if st := status(); len(st.Pairs) != 2 {
		t.Errorf("after the reload: %+v", st)
	}
	moved, _ := config.Parse("arbiter.toml", []byte(strings.Replace(src, "127.0.0.1:0", "127.0.0.1:1", 1)))
	if err := a.Reload(moved); err == nil {
		t.Error("a new listen address applied live")
	}
}

// On a taught-in node (no pair-key in its config) arbiter-key reads the
// pair key from the pair record in the state dir; before the teach-in it
// says the node is not paired, and a damaged record is an error too.
// Before, it printed the key derived from an empty pair key.
func TestArbiterKeyTaughtIn(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	node := filepath.Join(dir, "node.toml")
	src := fmt.Sprintf("mode = \"main\"\nstate-dir = %q\n[lan1]\ninterface = \"l1\"\n[lan2]\ninterface = \"l2\"\n[arbiter]\naddress = \"192.0.2.7\"\n", state)
	if err := os.WriteFile(node, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), "arbiter-key", []string{"--config", node}, &out)
	if err == nil || !strings.Contains(err.Error(), "not paired") || out.Len() != 0 {
		t.Fatalf("unpaired node: %v, printed %q", err, out.String())
	}

	rec := pairing.Record{Role: pairing.RoleMain, NodeID: 1, PairKey: [32]byte{1, 2, 3, 4},
		Peer: pairing.Peer{NodeID: 2, Name: "spare", Key: make([]byte, 32)}}
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(state, 0o700)
	record := filepath.Join(state, "pair.record") // the daemon's file name
	if err := os.WriteFile(record, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), "arbiter-key", []string{"--config", node}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), arbiter.FormatKey(arbiter.DeriveKey(rec.PairKey[:])); got != want {
		t.Fatalf("taught-in node: printed %q, want %q", got, want)
	}

	b[len(b)-1] ^= 1
	os.WriteFile(record, b, 0o600)
	out.Reset()
	if err := run(context.Background(), "arbiter-key", []string{"--config", node}, &out); err == nil || out.Len() != 0 {
		t.Fatalf("damaged record: %v, printed %q", err, out.String())
	}
}
