// Package control is the daemon's control socket: a Unix stream socket,
// root only, carrying one JSON request and one JSON response per
// connection; a streaming request (log --follow) gets responses marked
// More until the client hangs up. The command table (Commands) is here too.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Request is a client command with its typed arguments; Check tells which
// fields each command takes.
type Request struct {
	Cmd    string `json:"cmd"`
	N      int    `json:"n,omitempty"`      // log: entries (0: all); capture: frames
	Follow bool   `json:"follow,omitempty"` // log: stream new entries
	Force  bool   `json:"force,omitempty"`  // takeover
	Keep   string `json:"keep,omitempty"`   // resolve: KeepLocal or KeepPeer
	Test   bool   `json:"test,omitempty"`   // leds test
	Pair   string `json:"pair,omitempty"`   // pair: the step (PairSteps)
	Code   string `json:"code,omitempty"`   // pair join: the one-time code NNNN-NNNN
}

// Response is the daemon's answer. Text is for humans, Data for --json.
type Response struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Text  string          `json:"text,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	// More marks one item of a stream; the last response has it unset.
	More bool `json:"more,omitempty"`
}

// Handler answers one request. It runs on the connection's goroutine; ctx
// ends when the client hangs up or the server stops. A streaming handler
// calls send for each item (an error: the client is gone) and returns the
// final response.
type Handler func(ctx context.Context, req Request, send func(Response) error) Response

// MaxRequest bounds a request's size.
const MaxRequest = 4096

// DecodeRequest reads one request and checks it (Request.Check).
func DecodeRequest(r io.Reader) (Request, error) {
	dec := json.NewDecoder(io.LimitReader(r, MaxRequest))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err := req.Check(); err != nil {
		return Request{}, err
	}
	return req, nil
}

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

// Serve accepts connections until ctx ends or the server is closed, and
// returns once every connection's handler has returned.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control: %w", err)
		}
		conns.Go(func() { s.handle(ctx, c, h) })
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
	req, err := DecodeRequest(c)
	if err != nil {
		json.NewEncoder(c).Encode(Response{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	// The client sends nothing more: a read that ends means it hung up.
	ctx, cancel := context.WithCancel(ctx)
	var hangup sync.WaitGroup
	hangup.Go(func() {
		var b [1]byte
		c.Read(b[:])
		cancel()
	})
	defer func() {
		cancel()
		c.SetReadDeadline(time.Unix(1, 0)) // ends the hang-up read
		hangup.Wait()
	}()
	enc := json.NewEncoder(c)
	send := func(r Response) error {
		r.More = true
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return enc.Encode(r)
	}
	resp := h(ctx, req, send)
	resp.More = false
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	enc.Encode(resp)
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
	return Stream(ctx, path, req, nil)
}

// Stream sends one request and hands each streamed response to each (an
// error ends the stream) before it returns the final one. Cancelling ctx
// hangs up.
func Stream(ctx context.Context, path string, req Request, each func(Response) error) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Response{}, fmt.Errorf("control: is the daemon running? %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("control: %w", err)
	}
	dec := json.NewDecoder(c)
	var resp Response
	for {
		resp = Response{}
		if err := dec.Decode(&resp); err != nil {
			if ctx.Err() != nil {
				return Response{}, ctx.Err()
			}
			return Response{}, fmt.Errorf("control: reading the answer: %w", err)
		}
		if !resp.More {
			break
		}
		if each != nil {
			if err := each(resp); err != nil {
				return Response{}, err
			}
		}
	}
	if !resp.OK && resp.Error == "" {
		resp.Error = "the daemon refused the command"
	}
	return resp, nil
}
