package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/addr/addrtest"
	"github.com/pairguard/pairguard/drivers/arp/arptest"
	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
)

// startDaemon runs a daemon over in-memory links with its control socket,
// as `pairguard run` does, and returns the socket's path.
func startDaemon(t *testing.T, mode string, lan2, lan1 *rawethertest.Hub, id byte) string {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(`mode = %q
state-dir = %q
pair-key = "main-test-pair-key-00001"
[lan1]
interface = "l1"
service-address = "192.168.5.10/24"
[lan2]
interface = "l2"
[heartbeat]
interval = "20ms"
connection-wait-time = "300ms"
[hooks]
dir = %q
`, mode, dir, filepath.Join(dir, "hooks"))
	cfg, err := config.Parse(mode+".toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	hw := net.HardwareAddr{2, 0, 0, 0, 0, id}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := daemon.New(cfg, daemon.Deps{
		LAN2: lan2.Port(mode+"-l2", hw), LAN1: lan1.Port(mode+"-l1", hw),
		Addr: addrtest.New(), ARP: arptest.New(hw),
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pg.sock")
	srv, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { serve(ctx, d, srv, filepath.Join(dir, "none.toml"), log) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return path
}

func role(t *testing.T, socket string) string {
	var out bytes.Buffer
	if err := run(context.Background(), "status", []string{"--json", "--socket", socket}, &out); err != nil {
		return ""
	}
	var r daemon.Report
	json.Unmarshal(out.Bytes(), &r)
	return r.Role
}

func waitRole(t *testing.T, socket, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for role(t, socket) != want {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// `is-primary` exits 0 only on the primary.
func TestIsPrimary(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	main := startDaemon(t, "main", lan2, lan1, 1)
	spare := startDaemon(t, "spare", lan2, lan1, 2)
	waitRole(t, main, "primary")
	waitRole(t, spare, "secondary")
	var out bytes.Buffer
	if err := run(context.Background(), "is-primary", []string{"--socket", main}, &out); err != nil || out.Len() != 0 {
		t.Errorf("is-primary on the primary: %v, printed %q", err, out.String())
	}
	var ee exitError
	if err := run(context.Background(), "is-primary", []string{"--socket", spare}, &out); !errors.As(err, &ee) || ee.code != 1 || ee.msg != "not primary (role secondary)" {
		t.Errorf("is-primary on the secondary: %v", err)
	}
	if err := run(context.Background(), "is-primary", []string{"--socket", filepath.Join(t.TempDir(), "none")}, &out); err == nil {
		t.Error("is-primary without a daemon succeeded")
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `log --follow --json` prints one JSON object a line as things happen,
// until Ctrl-C (ctx).
func TestLogFollowJSON(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	spare := startDaemon(t, "spare", lan2, lan1, 2)
	waitRole(t, spare, "primary") // alone: takes over after connection-wait-time
	var out syncBuffer
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, "log", []string{"--follow", "--json", "-n", "0", "--socket", spare}, &out) }()
	// The main arrives: the spare sees the peer, and the logbook says so.
	startDaemon(t, "main", lan2, lan1, 1)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), `"type":"entry"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no streamed entry: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("follow after Ctrl-C: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var ev daemon.FollowEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Type == "" {
			t.Errorf("line %q: %v", sc.Text(), err)
		}
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), "help", nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range control.Commands {
		if !strings.Contains(out.String(), c.Usage()) {
			t.Errorf("usage lacks %q", c.Usage())
		}
	}
	var ue *control.UsageError
	if err := run(context.Background(), "bogus", nil, &out); !errors.As(err, &ue) {
		t.Errorf("unknown command: %v", err)
	}
	if err := run(context.Background(), "takeover", nil, &out); !errors.As(err, &ue) {
		t.Errorf("takeover without --force: %v", err)
	}
}
