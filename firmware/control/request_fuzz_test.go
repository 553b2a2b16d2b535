package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// socketPair returns the two ends of a connected Unix stream socket pair.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "control-fuzz")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = c.(*net.UnixConn)
	}
	return ends[0], ends[1]
}

// FuzzRequest sends arbitrary bytes to the control socket's request
// parser as a client would, over a real socket pair. The server must
// answer every input with one JSON Response: either the handler's, for a
// request that survives a JSON round trip unchanged, or a "bad request".
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"status"}`,
		`{"cmd":"resolve","keep":"local"}`,
		`{"cmd":"capture","n":10}`,
		`{"cmd":"log","n":5,"follow":true}`,
		`{"cmd":"status"}{"cmd":"swap"}`,
		`{"cmd":1}`,
		`{"args":[null]}`,
		`{"cmd":"\u0000"}`,
		`[`,
		``,
		`null`,
		strings.Repeat(`[`, 10000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		client, server := socketPair(t)
		defer client.Close()
		var got *Request
		done := make(chan struct{})
		go func() {
			defer close(done)
			(&Server{}).handle(context.Background(), server, func(_ context.Context, req Request, _ func(Response) error) Response {
				got = &req
				return Response{OK: true, Text: "handled"}
			})
		}()
		client.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Write(b); err != nil {
			t.Fatal(err)
		}
		client.CloseWrite()
		var resp Response
		if err := json.NewDecoder(client).Decode(&resp); err != nil {
			t.Fatalf("no JSON answer: %v", err)
		}
		<-done
		want, werr := DecodeRequest(bytes.NewReader(b))
		if got == nil {
			if werr == nil || resp.OK || resp.Error != werr.Error() {
				t.Fatalf("input %q: not handled, answered %+v (parser: %v)", b, resp, werr)
			}
			return
		}
		if werr != nil || !reflect.DeepEqual(*got, want) {
			t.Fatalf("input %q: handled as %+v, parser says %+v, %v", b, *got, want, werr)
		}
		if !resp.OK || resp.Text != "handled" {
			t.Fatalf("parsed request answered %+v", resp)
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		// A request re-encodes to a fixed point ("args":[] and no args
		// are the same request).
		var back Request
		if err := json.Unmarshal(again, &back); err != nil {
			t.Fatalf("request %+v re-encoded to %s: %v", got, again, err)
		}
		if twice, _ := json.Marshal(back); !reflect.DeepEqual(twice, again) {
			t.Fatalf("request %+v: %s, then %s", got, again, twice)
		}
	})
}
