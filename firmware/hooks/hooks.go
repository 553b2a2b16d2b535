// Package hooks runs the operator's scripts on role transitions and alarms.
//
// The hooks directory holds executables. For an event (to-primary,
// to-secondary, fault, alarm) the runner executes, in lexical order:
//   - a file named exactly after the event (the seeds' start_prim/stop_prim);
//   - every file whose name starts with a digit ("50-syslog", run-parts
//     style), with the event as its first argument.
//
// Each runs in its own process group with a timeout and this environment:
// PAIRGUARD_EVENT, PAIRGUARD_ROLE, PAIRGUARD_PREV_ROLE, PAIRGUARD_PEER (the
// peer's state), PAIRGUARD_REASON, PAIRGUARD_EPOCH, PAIRGUARD_NODE,
// PAIRGUARD_MODE and PAIRGUARD_STANDBY (cold or warm). A timeout, or the
// cancellation of the context, kills the whole process group, so children
// of a killed hook do not survive it.
//
// A hook may start a service in the background (`my-service &`): the hook
// succeeds when its own process exits with status 0, even while the service
// still holds the hook's output. What the hook printed before it exited is
// returned; what a background process prints later is read and discarded by
// Background until that process closes its output or Background is closed.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// Env is what a hook is told.
type Env struct {
	Event, Role, PrevRole, Peer, Reason, Node, Mode, Standby string
	Epoch                                                    uint64
}

func (e Env) list() []string {
	return []string{
		"PAIRGUARD_EVENT=" + e.Event,
		"PAIRGUARD_ROLE=" + e.Role,
		"PAIRGUARD_PREV_ROLE=" + e.PrevRole,
		"PAIRGUARD_PEER=" + e.Peer,
		"PAIRGUARD_REASON=" + e.Reason,
		"PAIRGUARD_NODE=" + e.Node,
		"PAIRGUARD_MODE=" + e.Mode,
		"PAIRGUARD_STANDBY=" + e.Standby,
		fmt.Sprintf("PAIRGUARD_EPOCH=%d", e.Epoch),
	}
}

// MaxOutput is how much of a hook's output Run keeps.
const MaxOutput = 8 << 10

// DefaultGrace is how long Run waits, after a hook exited, for the rest of
// its output when no Grace is set.
const DefaultGrace = 200 * time.Millisecond

// Runner runs hooks from one directory. It is a plain value: copy it.
type Runner struct {
	Dir     string
	Timeout time.Duration
	// Grace is how long the output of an exited hook is awaited before it
	// counts as held by a background process (DefaultGrace when zero).
	Grace time.Duration
}

// Result is what one script did.
type Result struct {
	Script string // the file's base name
	Output string // at most MaxOutput bytes of stdout and stderr
	Err    error  // nil: exit status 0
	// Background is set when a process the hook left running still holds
	// its output (a service started with &).
	Background bool
}

// Scripts lists the executables that run for event, in order.
func (r Runner) Scripts(event string) ([]string, error) {
	ents, err := os.ReadDir(r.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		if name != event && !(len(name) > 0 && unicode.IsDigit(rune(name[0]))) {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Mode()&0o111 == 0 {
			continue
		}
		out = append(out, filepath.Join(r.Dir, name))
	}
	slices.Sort(out)
	return out, nil
}

// Run runs every script for env.Event, one after the other, and returns
// what each did and the first failure joined with the others; all scripts
// run even when one fails. When ctx ends, the running script's process
// group is killed and no further script starts. bg takes over the output
// of background processes (nil: it is closed when the hook exits, and a
// background process writing to it gets EPIPE).
func (r Runner) Run(ctx context.Context, env Env, bg *Background) ([]Result, error) {
	scripts, err := r.Scripts(env.Event)
	if err != nil {
		return nil, err
	}
	var results []Result
	var errs []error
	for _, s := range scripts {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("hooks: %s %s: not started: %w", filepath.Base(s), env.Event, context.Cause(ctx)))
			break
		}
		res := r.one(ctx, s, env, bg)
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("hooks: %s %s: %w", res.Script, env.Event, res.Err))
		}
		results = append(results, res)
	}
	return results, errors.Join(errs...)
}

func (r Runner) one(ctx context.Context, path string, env Env, bg *Background) Result {
	res := Result{Script: filepath.Base(path)}
	pr, pw, err := os.Pipe()
	if err != nil {
		res.Err = err
		return res
	}
	cmd := exec.Command(path)
	if res.Script != env.Event {
		cmd.Args = append(cmd.Args, env.Event)
	}
	cmd.Env = append(os.Environ(), env.list()...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		res.Err = err
		return res
	}
	out := &capped{max: MaxOutput}
	eof := make(chan struct{})
	go func() { // ends at EOF or when pr is closed; waited for through eof
		defer close(eof)
		out.readFrom(pr)
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // joined below in every case
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res.Err = <-exited:
	case <-timer.C:
		killGroup(cmd.Process.Pid)
		<-exited
		res.Err = fmt.Errorf("timed out after %v; its process group was killed", timeout)
	case <-ctx.Done():
		killGroup(cmd.Process.Pid)
		<-exited
		res.Err = fmt.Errorf("killed: %w", context.Cause(ctx))
	}
	grace := r.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	select {
	case <-eof:
		pr.Close()
	case <-time.After(grace):
		// A process the hook started holds the output: a background
		// service. The hook's own result stands; bg reads on.
		res.Background = true
		out.stop()
		if bg != nil {
			bg.adopt(pr, eof)
		} else {
			pr.Close()
			<-eof
		}
	}
	res.Output = out.String()
	return res
}

// killGroup kills the process group of a hook (its pid: Setpgid).
func killGroup(pid int) {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// capped keeps the first max bytes written until stopped.
type capped struct {
	mu      sync.Mutex
	b       []byte
	max     int
	stopped bool
}

func (c *capped) readFrom(f *os.File) {
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		c.mu.Lock()
		if !c.stopped && len(c.b) < c.max {
			c.b = append(c.b, buf[:min(n, c.max-len(c.b))]...)
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *capped) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}

// Background owns the output pipes that processes started by hooks keep
// open: it reads and discards what they write, so they never block or die
// of EPIPE, until they close it or Close is called. The zero value is ready.
type Background struct {
	mu     sync.Mutex
	pipes  map[*os.File]chan struct{} // the pipe and its reader's end
	closed bool
}

func (b *Background) adopt(f *os.File, eof chan struct{}) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		f.Close()
		<-eof
		return
	}
	if b.pipes == nil {
		b.pipes = map[*os.File]chan struct{}{}
	}
	b.pipes[f] = eof
	b.prune()
	b.mu.Unlock()
}

// prune forgets the pipes whose writers have all gone; b.mu is held.
func (b *Background) prune() {
	for f, eof := range b.pipes {
		select {
		case <-eof:
			f.Close()
			delete(b.pipes, f)
		default:
		}
	}
}

// Held reports how many pipes background processes still hold open.
func (b *Background) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune()
	return len(b.pipes)
}

// Close stops reading the pipes and waits for the readers to end.
func (b *Background) Close() {
	b.mu.Lock()
	b.closed = true
	pipes := b.pipes
	b.pipes = nil
	b.mu.Unlock()
	for f, eof := range pipes {
		f.Close()
		<-eof
	}
}
