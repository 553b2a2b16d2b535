// Package hooks runs the operator's scripts on role transitions and alarms.
//
// The hooks directory holds executables. For an event (to-primary,
// to-secondary, fault, alarm) the runner executes, in lexical order:
//   - a file named exactly after the event (the seeds' start_prim/stop_prim);
//   - every file whose name starts with a digit ("50-syslog", run-parts
//     style), with the event as its first argument.
//
// Each runs with a timeout and this environment: PAIRGUARD_EVENT,
// PAIRGUARD_ROLE, PAIRGUARD_PREV_ROLE, PAIRGUARD_PEER (the peer's state),
// PAIRGUARD_REASON, PAIRGUARD_EPOCH, PAIRGUARD_NODE, PAIRGUARD_MODE.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Events the daemon runs hooks for.
var Events = []string{"to-primary", "to-secondary", "fault", "alarm"}

// Env is what a hook is told.
type Env struct {
	Event, Role, PrevRole, Peer, Reason, Node, Mode string
	Epoch                                           uint64
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
		fmt.Sprintf("PAIRGUARD_EPOCH=%d", e.Epoch),
	}
}

// Runner runs hooks from one directory.
type Runner struct {
	Dir     string
	Timeout time.Duration
}

// Scripts lists the executables that run for event, in order.
func (r *Runner) Scripts(event string) ([]string, error) {
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

// Run runs every script for env.Event and returns the first failure; all
// scripts run even when one fails. Output is returned for the log.
func (r *Runner) Run(ctx context.Context, env Env) (string, error) {
	scripts, err := r.Scripts(env.Event)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	var errs []error
	for _, s := range scripts {
		cctx, cancel := context.WithTimeout(ctx, r.Timeout)
		cmd := exec.CommandContext(cctx, s)
		if filepath.Base(s) != env.Event {
			cmd.Args = append(cmd.Args, env.Event)
		}
		cmd.Env = append(os.Environ(), env.list()...)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		if cctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %v", r.Timeout)
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("hooks: %s %s: %w", filepath.Base(s), env.Event, err))
		}
	}
	return out.String(), errors.Join(errs...)
}
