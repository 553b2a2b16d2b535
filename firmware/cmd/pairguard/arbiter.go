package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
)

// arbiterKey prints the key a node's pair is served with on the arbiter
// (`[[arbiter.pair]] key`): derived from the pair key, so the arbiter
// cannot forge heartbeats. A taught-in node (no pair-key in its config)
// has its pair key in the pair record of its state dir; an unpaired one
// has none, which is an error.
func arbiterKey(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("arbiter-key", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "/etc/pairguard/pairguard.toml", "config file")
	if err := fs.Parse(args); err != nil {
		return &control.UsageError{Err: fmt.Errorf("arbiter-key: %w", err)}
	}
	if fs.NArg() > 0 {
		return usagef("arbiter-key takes only --config FILE")
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if c.Mode != "main" && c.Mode != "spare" {
		return fmt.Errorf("arbiter-key: %s is a config of mode %s; run it with the config of a node of the pair (main or spare)", *cfgPath, c.Mode)
	}
	key, err := daemon.PairKey(c)
	if err != nil {
		return fmt.Errorf("arbiter-key: %w", err)
	}
	_, err = fmt.Fprintln(out, arbiter.FormatKey(arbiter.DeriveKey(key)))
	return err
}

// runArbiter is `pairguard run` with `mode = "arbiter"`.
func runArbiter(cfg *config.Config, cfgPath string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := daemon.OpenArbiter(cfg, log)
	if err != nil {
		return err
	}
	srv, err := control.Listen(cfg.Control.Socket)
	if err != nil {
		return errors.Join(err, a.Run(canceled()))
	}
	log.Info("pairguard arbiter running", "listen", cfg.Arbiter.Listen, "pairs", len(cfg.Arbiter.Keys), "socket", cfg.Control.Socket)
	return serveArbiter(ctx, a, srv, cfgPath, log)
}

// canceled returns a context that has ended (to close what was opened).
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// serveArbiter runs the arbiter, its control socket and the SIGHUP reloads
// until ctx ends; every goroutine has ended when it returns.
func serveArbiter(ctx context.Context, a *daemon.ArbiterService, srv *control.Server, cfgPath string, log *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	wg.Go(func() {
		if err := srv.Serve(sctx, a.Handle); err != nil {
			log.Error("control socket failed", "err", err)
		}
	})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() {
		for {
			select {
			case <-hup:
			case <-sctx.Done():
				return
			}
			next, err := config.Load(cfgPath)
			if err == nil {
				err = a.Reload(next)
			}
			if err != nil {
				log.Error("reload refused", "err", err)
			}
		}
	})
	err := a.Run(ctx)
	stopServing()
	return err
}
