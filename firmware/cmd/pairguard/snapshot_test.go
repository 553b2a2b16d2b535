package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/frame/wireshark"
)

const snapKey = "pg-snapshot-secret-0123456789"

// readSnapshot returns the files of a snapshot archive by base name.
func readSnapshot(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	dir := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d, name, _ := strings.Cut(h.Name, "/")
		if dir == "" {
			dir = d
		}
		if d != dir || !strings.HasPrefix(d, "pairguard-snapshot-") {
			t.Errorf("%s: not under one pairguard-snapshot-* directory", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	return files
}

// standInDaemon stands in for the daemon on socket: one JSON request, one JSON
// response per connection, as control.Do expects.
func standInDaemon(t *testing.T, socket string, h func(control.Request) control.Response) {
	t.Helper()
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var req control.Request
			if err := json.NewDecoder(c).Decode(&req); err == nil {
				json.NewEncoder(c).Encode(h(req))
			}
			c.Close()
		}
	}()
}

func writeConfig(t *testing.T, dir, socket string) string {
	t.Helper()
	cfg := filepath.Join(dir, "pairguard.toml")
	src := "mode = \"main\"\n# the pair's secret\npair-key = \"" + snapKey + "\"\nboard = \"qemu-virt-arm64\"\n" +
		"state-dir = \"" + filepath.Join(dir, "state") + "\"\n" +
		"[control]\nsocket = \"" + socket + "\"\n[lan1]\ninterface = \"pg-lan1\"\n[lan2]\ninterface = \"pg-lan2\"\n"
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	os.WriteFile(filepath.Join(dir, "state", "epoch"), []byte("7\n"), 0o600)
	return cfg
}

// TestSnapshot runs `pairguard snapshot` against a stand-in daemon on a
// control socket: the archive holds its status, logbook and capture, the
// config without the pair key, the board in effect and the local listings.
func TestSnapshot(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "pg.sock")
	cfg := writeConfig(t, dir, socket)
	key := frame.NewKey([]byte(snapKey))
	hb, _ := (&frame.Frame{Type: frame.TypeHeartbeat, PairID: key.PairID(), NodeID: 9, Role: 2, Epoch: 7, Seq: 1}).AppendBinary(nil, key)
	frames, _ := json.Marshal([]daemon.CapturedFrame{
		{Time: time.Unix(1700000000, 0), Path: "lan2", Src: "02:00:00:00:00:09", Payload: hb},
		{Time: time.Unix(1700000000, 1e8), Path: "lan2", Src: "02:00:00:00:00:09", Payload: hb},
	})
	var (
		mu    sync.Mutex
		asked []string
	)
	standInDaemon(t, socket, func(req control.Request) control.Response {
		mu.Lock()
		asked = append(asked, fmt.Sprintf("%s %d", req.Cmd, requestCount(req)))
		mu.Unlock()
		switch req.Cmd {
		case "status":
			return control.Response{OK: true, Text: "role primary\n", Data: json.RawMessage(`{"role":"primary","software":"pg-1.0","peer":{"software":"pg-0.9"}}`)}
		case "log":
			return control.Response{OK: true, Text: "takeover: peer lost\n", Data: json.RawMessage(`[{"event":"takeover"}]`)}
		case "capture":
			return control.Response{OK: true, Text: "2 frames\n", Data: frames}
		}
		return control.Response{Error: "unknown"}
	})

	out := filepath.Join(dir, "snap.tar.gz")
	var stdout bytes.Buffer
	// No --socket: the config's control socket is used.
	if err := runSnapshot([]string{"-w", out, "--config", cfg, "-n", "2"}, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "snapshot written to "+out) {
		t.Errorf("output: %s", stdout.String())
	}
	files := readSnapshot(t, out)
	for _, name := range []string{"README.txt", "status.txt", "status.json", "logbook.txt", "logbook.json", "capture.pcap",
		"pairguard.lua", "config.toml", "config-check.txt", "board.json", "versions.txt", "kernel.txt", "links.txt",
		"state-dir.txt", "hooks.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("snapshot lacks %s", name)
		}
	}
	for name, body := range files {
		if strings.Contains(body, snapKey) {
			t.Errorf("%s holds the pair key", name)
		}
	}
	if c := files["config.toml"]; !strings.Contains(c, `pair-key = "REDACTED"`) || !strings.Contains(c, "# the pair's secret") || !strings.Contains(c, `board = "qemu-virt-arm64"`) {
		t.Errorf("config.toml:\n%s", c)
	}
	if !strings.Contains(files["config-check.txt"], ": ok (mode main") {
		t.Errorf("config-check.txt: %s", files["config-check.txt"])
	}
	if !strings.Contains(files["status.json"], `"role":"primary"`) || files["logbook.txt"] != "takeover: peer lost\n" {
		t.Errorf("status.json %q, logbook.txt %q", files["status.json"], files["logbook.txt"])
	}
	if v := files["versions.txt"]; !strings.Contains(v, "pg-1.0") || !strings.Contains(v, "pg-0.9") {
		t.Errorf("versions.txt:\n%s", v)
	}
	if !strings.Contains(files["board.json"], "eth1") {
		t.Errorf("board.json lacks the board's LAN 2 interface:\n%s", files["board.json"])
	}
	if !strings.Contains(files["state-dir.txt"], "epoch") || strings.Contains(files["state-dir.txt"], "7\n") {
		t.Errorf("state-dir.txt should list epoch without its content:\n%s", files["state-dir.txt"])
	}
	if files["pairguard.lua"] != string(wireshark.Dissector) {
		t.Error("pairguard.lua is not the dissector")
	}
	r, err := pcapgo.NewReader(strings.NewReader(files["capture.pcap"]))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if !bytes.Equal(data[14:], hb) {
			t.Errorf("packet %d payload differs", n+1)
		}
		n++
	}
	if n != 2 {
		t.Errorf("capture.pcap holds %d packets, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "capture 2"; !strings.Contains(strings.Join(asked, ";"), want) {
		t.Errorf("asked %q, want %q among them", asked, want)
	}
	if strings.Contains(files["errors.txt"], "status") || strings.Contains(files["errors.txt"], "config") {
		t.Errorf("errors.txt: %s", files["errors.txt"])
	}
}

// TestSnapshotDaemonDown: with no daemon the snapshot still collects what
// is local and says what is missing.
func TestSnapshotDaemonDown(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, filepath.Join(dir, "absent.sock"))
	out := filepath.Join(dir, "snap.tar.gz")
	var stdout bytes.Buffer
	if err := runSnapshot([]string{"-w", out, "--config", cfg}, &stdout); err != nil {
		t.Fatal(err)
	}
	files := readSnapshot(t, out)
	for _, part := range []string{"status", "logbook", "capture"} {
		if !strings.Contains(files["errors.txt"], part+": ") || !strings.Contains(stdout.String(), part+": ") {
			t.Errorf("%s not reported missing; errors.txt:\n%s\noutput:\n%s", part, files["errors.txt"], stdout.String())
		}
	}
	if _, ok := files["config.toml"]; !ok {
		t.Error("config.toml missing while the daemon is down")
	}
	if _, ok := files["status.json"]; ok {
		t.Error("status.json present without a daemon")
	}
}

func TestSnapshotNeedsFile(t *testing.T) {
	if err := runSnapshot(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "-w FILE") {
		t.Errorf("snapshot without -w: %v, want a usage error naming -w", err)
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{`pair-key = "abc def"`, `pair-key = "REDACTED"`},
		{`pair-key='abc'`, `pair-key="REDACTED"`},
		{`  "pair-key" = "a\"b" # comment`, `  "pair-key" = "REDACTED" # comment`},
		{"[[arbiter.pair]]\nkey = \"k1\"\n", "[[arbiter.pair]]\nkey = \"REDACTED\"\n"},
		{`pair = { name = "x", key = "k2" }`, `pair = { name = "x", key = "REDACTED" }`},
		{`pair-key = """multi` + "\nline" + `"""`, `pair-key = "REDACTED"`},
		{`pair-key-file = "/etc/pairguard/key"`, `pair-key-file = "/etc/pairguard/key"`},
		{`node-name = "key"`, `node-name = "key"`},
		{`api-token = 12345`, `api-token = "REDACTED"`},
	}
	for _, c := range cases {
		if got := string(redact([]byte(c.in))); got != c.want {
			t.Errorf("redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
