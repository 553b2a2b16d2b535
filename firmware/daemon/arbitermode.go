package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
)

// ArbiterService is `mode = "arbiter"`: the arbiter of firmware/arbiter on
// `[arbiter] listen`, serving the pairs of `[[arbiter.pair]]`, with its
// state in state-dir. Its control socket answers `status`; SIGHUP applies
// a changed list of pairs.
type ArbiterService struct {
	cfg *config.Config
	srv *arbiter.Server
	log *slog.Logger
}

// OpenArbiter opens the arbiter's UDP port and loads its state. A port
// that cannot be opened is fatal; an unreadable state is not (the arbiter
// then waits one lease before granting, as after a loss of its state).
func OpenArbiter(cfg *config.Config, log *slog.Logger) (*ArbiterService, error) {
	if !cfg.IsArbiter() {
		return nil, fmt.Errorf("daemon: mode %s is not arbiter", cfg.Mode)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state-dir: %w", err)
	}
	srv, err := arbiter.Listen(cfg.Arbiter.Listen, arbiter.ServerConfig{
		Config:   arbiter.DefaultConfig(),
		StateDir: cfg.StateDir,
		Keys:     cfg.Arbiter.Keys,
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("arbiter.listen %q: %w", cfg.Arbiter.Listen, err)
	}
	return &ArbiterService{cfg: cfg, srv: srv, log: log}, nil
}

// Run answers requests until ctx ends; the port is closed when it returns.
func (a *ArbiterService) Run(ctx context.Context) error {
	defer a.srv.Close()
	return a.srv.Serve(ctx)
}

// Reload applies a new config (SIGHUP): the pairs served change live, the
// rest needs a restart. It runs on the signal's goroutine; the server is
// safe for concurrent use.
func (a *ArbiterService) Reload(next *config.Config) error {
	if err := a.cfg.Reloadable(next); err != nil {
		return err
	}
	if err := a.srv.SetKeys(next.Arbiter.Keys); err != nil {
		return err
	}
	a.log.Info("configuration reloaded", "file", next.File(), "pairs", len(next.Arbiter.Keys))
	a.cfg = next
	return nil
}

// Handle answers a control request: only `status` means something on an
// arbiter.
func (a *ArbiterService) Handle(_ context.Context, req control.Request, _ func(control.Response) error) control.Response {
	if req.Cmd != "status" {
		return control.Response{Error: fmt.Sprintf("%s: not available on an arbiter (mode arbiter answers status only)", req.Cmd)}
	}
	st := a.srv.Status()
	return control.Response{OK: true, Text: ArbiterText(st, a.srv.Addr().String()), Data: jsonData(st)}
}

// ArbiterText renders an arbiter's status for a terminal.
func ArbiterText(st arbiter.ServerStatus, addr string) string {
	var b strings.Builder
	state := "granting"
	if st.Starting {
		state = "starting (grants only to the recorded holders for one lease)"
	}
	fmt.Fprintf(&b, "arbiter   %s, %d pairs, on %s\n", state, len(st.Pairs), addr)
	for _, p := range st.Pairs {
		holder := "none"
		if p.Holder != "" {
			holder = p.Holder
			if p.LeaseMS > 0 {
				holder += fmt.Sprintf(", lease %d ms", p.LeaseMS)
			} else {
				holder += ", lease expired"
			}
		}
		fmt.Fprintf(&b, "pair      %s: holder %s, epoch %d\n", p.Pair, holder, p.Epoch)
		for _, n := range p.Nodes {
			if n.AskedMS < 0 {
				fmt.Fprintf(&b, "  node    %s: not asking\n", n.Node)
				continue
			}
			fmt.Fprintf(&b, "  node    %s: %s, %s, asked %d ms ago\n", n.Node, n.Mode, n.Data, n.AskedMS)
		}
	}
	fmt.Fprintf(&b, "dropped   %d datagrams\n", st.Dropped)
	return b.String()
}
