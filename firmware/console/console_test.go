package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// term is the user's side of an in-memory serial line to a running console.
type term struct {
	t    *testing.T
	conn net.Conn

	mu   sync.Mutex
	out  strings.Builder
	done chan error // Run's result

	calls chan []string
}

// start runs the console on one end of a net.Pipe; run, when nil, records the
// command and prints "ran ARGS".
func start(t *testing.T, run RunFunc) (*term, context.CancelFunc) {
	t.Helper()
	user, dev := net.Pipe()
	tm := &term{t: t, conn: user, done: make(chan error, 1), calls: make(chan []string, 16)}
	if run == nil {
		run = func(ctx context.Context, args []string, out io.Writer) error {
			tm.calls <- args
			fmt.Fprintf(out, "ran %s\n", strings.Join(args, " "))
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { tm.done <- Run(ctx, dev, run) }()
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := user.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		user.Close()
		dev.Close()
	})
	tm.waitFor(Prompt)
	return tm, cancel
}

func (tm *term) typ(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.conn, s); err != nil {
		tm.t.Fatalf("typing %q: %v", s, err)
	}
}

func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// waitFor waits until the output contains s and returns the output.
func (tm *term) waitFor(s string) string {
	tm.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := tm.output()
		if strings.Contains(out, s) {
			return out
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("output never contained %q; got %q", s, out)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitPrompts waits for n prompts in the output in all.
func (tm *term) waitPrompts(n int) string {
	tm.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := tm.output()
		if strings.Count(out, Prompt) >= n {
			return out
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("waiting for %d prompts; got %q", n, out)
		}
		time.Sleep(time.Millisecond)
	}
}

func (tm *term) call() []string {
	tm.t.Helper()
	select {
	case args := <-tm.calls:
		return args
	case <-time.After(5 * time.Second):
		tm.t.Fatalf("no command ran; output %q", tm.output())
		return nil
	}
}

func (tm *term) noCall() {
	tm.t.Helper()
	select {
	case args := <-tm.calls:
		tm.t.Fatalf("unexpected command %q", args)
	default:
	}
}

func (tm *term) result() error {
	tm.t.Helper()
	select {
	case err := <-tm.done:
		return err
	case <-time.After(5 * time.Second):
		tm.t.Fatalf("console did not stop; output %q", tm.output())
		return nil
	}
}

func TestLineEditing(t *testing.T) {
	tests := []struct {
		name  string
		typed string
		want  []string
	}{
		{"plain CR", "status --json\r", []string{"status", "--json"}},
		{"LF", "status\n", []string{"status"}},
		{"CR LF is one Enter", "status\r\n", []string{"status"}},
		{"DEL", "statx\x7fus\r", []string{"status"}},
		{"backspace", "stq\bq\x08atus\r", []string{"status"}},
		{"backspace on empty line", "\x7f\x7fsync\r", []string{"sync"}},
		{"Ctrl-U", "garbage here\x15log -n 5\r", []string{"log", "-n", "5"}},
		{"Ctrl-W", "leds blah\x17test\r", []string{"leds", "test"}},
		{"quotes", `check-config "/tmp/a b.toml"` + "\r", []string{"check-config", "/tmp/a b.toml"}},
		{"control characters ignored", "sw\x01\x02ap\r", []string{"swap"}},
		{"left arrow ignored", "swap\x1b[D\r", []string{"swap"}},
		{"UTF-8 erased whole", "log é\x7f-n 1\r", []string{"log", "-n", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, _ := start(t, nil)
			tm.typ(tt.typed)
			if got := tm.call(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ran %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEchoAndOutput(t *testing.T) {
	tm, _ := start(t, nil)
	tm.typ("statx\x7fus\r")
	tm.call()
	out := tm.waitPrompts(2)
	want := Prompt + "statx\b \bus\r\nran status\r\n" + Prompt
	if out != want {
		t.Errorf("screen %q, want %q", out, want)
	}
}

func TestCtrlCAbandonsLine(t *testing.T) {
	tm, _ := start(t, nil)
	tm.typ("swap\x03")
	out := tm.waitPrompts(2)
	tm.noCall()
	if !strings.Contains(out, "swap^C\r\n"+Prompt) {
		t.Errorf("screen %q", out)
	}
	tm.typ("sync\r")
	if got := tm.call(); !reflect.DeepEqual(got, []string{"sync"}) {
		t.Errorf("ran %q", got)
	}
}

func TestCtrlCInterruptsCommand(t *testing.T) {
	started := make(chan struct{})
	tm, _ := start(t, func(ctx context.Context, args []string, out io.Writer) error {
		fmt.Fprintln(out, "following the log")
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	tm.typ("log\r")
	<-started
	tm.typ("\x03")
	out := tm.waitPrompts(2)
	if !strings.Contains(out, "following the log\r\n^C interrupted\r\n"+Prompt) {
		t.Errorf("screen %q", out)
	}
	if strings.Contains(out, "error:") {
		t.Errorf("an interrupt is not an error: %q", out)
	}
}

func TestTypeAheadKept(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var ran [][]string
	tm, _ := start(t, func(ctx context.Context, args []string, out io.Writer) error {
		mu.Lock()
		ran = append(ran, args)
		mu.Unlock()
		if args[0] == "verify" {
			<-release
		}
		return nil
	})
	tm.typ("verify\r")
	tm.typ("status\r") // typed while verify runs
	close(release)
	tm.waitPrompts(3)
	mu.Lock()
	defer mu.Unlock()
	if want := [][]string{{"verify"}, {"status"}}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
}

func TestErrorPrinted(t *testing.T) {
	tm, _ := start(t, func(ctx context.Context, args []string, out io.Writer) error {
		return errors.New("control socket: connection refused")
	})
	tm.typ("status\r")
	tm.waitFor("error: control socket: connection refused\r\n" + Prompt)
}

func TestHistory(t *testing.T) {
	tm, _ := start(t, nil)
	tm.typ("status\r")
	tm.call()
	tm.typ("log -n 3\r")
	tm.call()
	tm.typ("\x1b[A\r") // up: log -n 3
	if got := tm.call(); !reflect.DeepEqual(got, []string{"log", "-n", "3"}) {
		t.Errorf("up ran %q", got)
	}
	tm.typ("\x1b[A\x1b[A\r") // up twice: status (log -n 3 is stored once)
	if got := tm.call(); !reflect.DeepEqual(got, []string{"status"}) {
		t.Errorf("up up ran %q", got)
	}
	tm.typ("swa\x1bOA\x1b[B\x1b[Bp\r") // up then down past the end restores the new line
	if got := tm.call(); !reflect.DeepEqual(got, []string{"swap"}) {
		t.Errorf("up down ran %q", got)
	}
	tm.typ("\x1b[B\x1b[B\r")                         // down at the end does nothing; empty line runs nothing
	tm.typ("\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\r") // up beyond the oldest stays there
	if got := tm.call(); !reflect.DeepEqual(got, []string{"status"}) {
		t.Errorf("up x6 ran %q", got)
	}
}

func TestHistoryBounded(t *testing.T) {
	tm, _ := start(t, nil)
	for i := 0; i < HistorySize+5; i++ {
		tm.typ(fmt.Sprintf("c%d\r", i))
		tm.call()
	}
	tm.typ(strings.Repeat("\x1b[A", HistorySize+5) + "\r")
	if got, want := tm.call(), []string{"c5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("oldest recalled %q, want %q", got, want)
	}
}

func TestHelpListsCommands(t *testing.T) {
	tm, _ := start(t, nil)
	tm.typ("help\r")
	out := tm.waitPrompts(2)
	tm.noCall()
	for _, c := range []string{"status [--json]", "log [-n N]", "ack", "sync", "swap", "takeover --force", "verify", "capture -n N -w FILE", "leds test", "check-config FILE",
		"resolve --keep-local|--discard-local", "is-primary", "log [-n N] [--follow] [--json]"} {
		if !strings.Contains(out, c) {
			t.Errorf("help lacks %q: %q", c, out)
		}
	}
	for _, line := range strings.Split(out, "\r\n") {
		if len(line) > Width {
			t.Errorf("help line longer than %d: %q", Width, line)
		}
	}
}

func TestOutputWrappedTo80Columns(t *testing.T) {
	long := strings.Repeat("peer up, mirror in-sync, epoch 42; ", 8)
	tm, _ := start(t, func(ctx context.Context, args []string, out io.Writer) error {
		fmt.Fprintln(out, long)
		fmt.Fprint(out, strings.Repeat("x", 200)) // no newline, no space
		return nil
	})
	tm.typ("status\r")
	out := tm.waitPrompts(2)
	body := out[strings.Index(out, "status\r\n")+len("status\r\n") : strings.LastIndex(out, Prompt)]
	if strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") {
		t.Errorf("bare LF in output %q", body)
	}
	lines := strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n")
	for _, l := range lines {
		if len(l) > Width {
			t.Errorf("line of %d columns: %q", len(l), l)
		}
	}
	strip := strings.NewReplacer(" ", "", "\r\n", "").Replace
	if got, want := strip(body), strip(long+strings.Repeat("x", 200)); got != want {
		t.Errorf("wrapping lost or changed text: %q", got)
	}
}

func TestLeaving(t *testing.T) {
	for name, typed := range map[string]string{"exit": "exit\r", "quit": "quit\r", "Ctrl-D": "\x04"} {
		t.Run(name, func(t *testing.T) {
			tm, _ := start(t, nil)
			tm.typ(typed)
			if err := tm.result(); err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			tm.noCall()
		})
	}
}

func TestCtrlDWithTextDoesNotLeave(t *testing.T) {
	tm, _ := start(t, nil)
	tm.typ("sync\x04\r")
	if got := tm.call(); !reflect.DeepEqual(got, []string{"sync"}) {
		t.Errorf("ran %q", got)
	}
}

func TestInputEnds(t *testing.T) {
	tm, _ := start(t, nil)
	tm.conn.Close()
	if err := tm.result(); err != nil {
		t.Errorf("Run after EOF = %v, want nil", err)
	}
}

func TestContextCancelled(t *testing.T) {
	tm, cancel := start(t, nil)
	cancel()
	if err := tm.result(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestUnterminatedQuote(t *testing.T) {
	tm, _ := start(t, nil)
	tm.typ(`check-config "oops` + "\r")
	tm.waitFor("error: console: unterminated quote")
	tm.noCall()
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"   ", nil, false},
		{"status", []string{"status"}, false},
		{"  log\t-n  5 ", []string{"log", "-n", "5"}, false},
		{`a "b c" 'd e'`, []string{"a", "b c", "d e"}, false},
		{`a""b ''`, []string{"ab", ""}, false},
		{`a\ b 'x\y'`, []string{"a b", `x\y`}, false},
		{`"open`, nil, true},
		{`trailing\`, nil, true},
	}
	for _, tt := range tests {
		got, err := Split(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Split(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
