package control

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pg.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, func(_ context.Context, r Request) Response {
		if r.Cmd != "status" {
			return Response{Error: "unknown command " + r.Cmd}
		}
		return Response{OK: true, Text: "role primary " + r.Args[0]}
	})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	resp, err := Do(rctx, path, Request{Cmd: "status", Args: []string{"x"}})
	if err != nil || !resp.OK || resp.Text != "role primary x" {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	resp, err = Do(rctx, path, Request{Cmd: "bogus"})
	if err != nil || resp.OK || resp.Error == "" {
		t.Fatalf("bogus: %+v, %v", resp, err)
	}
	if _, err := Listen(path); err == nil {
		t.Error("second daemon on the same socket accepted")
	}
	cancel()
	time.Sleep(50 * time.Millisecond)
	if _, err := Do(context.Background(), path, Request{Cmd: "status"}); err == nil {
		t.Error("Do after close succeeded")
	}
}
