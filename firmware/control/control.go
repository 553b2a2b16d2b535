// Package control is the daemon's control socket: a Unix stream socket,
// root only, carrying one JSON request and one JSON response per connection.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Request is a client command.
type Request struct {
	Cmd  string   `json:"cmd"`
	Args []string `json:"args,omitempty"`
}

// Response is the daemon's answer. Text is for humans, Data for --json.
type Response struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Text  string          `json:"text,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Handler answers one request. It runs on the connection's goroutine.
type Handler func(ctx context.Context, req Request) Response

// Server serves a control socket.
type Server struct {
	ln   *net.UnixListener
	path string
}

// Listen creates the socket at path with mode 0600, replacing a stale one.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control: %s: another daemon is listening", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return &Server{ln: ln, path: path}, nil
}

// Serve accepts connections until ctx ends or the server is closed.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	go func() { <-ctx.Done(); s.ln.Close() }()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control: %w", err)
		}
		go s.handle(ctx, c, h)
	}
}

// Close stops the server and removes the socket.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) handle(ctx context.Context, c *net.UnixConn, h Handler) {
	defer c.Close()
	if err := checkPeer(c); err != nil {
		json.NewEncoder(c).Encode(Response{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req Request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	resp := h(ctx, req)
	json.NewEncoder(c).Encode(resp)
}

// checkPeer lets only root, or the daemon's own user, talk to the daemon.
func checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var serr error
	raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if serr != nil {
		return fmt.Errorf("control: peer credentials: %w", serr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("control: uid %d is not allowed", cred.Uid)
	}
	return nil
}

// Do sends one request to the daemon at path and returns its response.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Response{}, fmt.Errorf("control: is the daemon running? %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("control: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("control: reading the answer: %w", err)
	}
	if !resp.OK && resp.Error == "" {
		resp.Error = "the daemon refused the command"
	}
	return resp, nil
}
