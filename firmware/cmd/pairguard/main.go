// Command pairguard is the Pairguard daemon (`pairguard run`) and the client
// of its control socket (every other command).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/pairguard/pairguard/firmware/config"
	pgconsole "github.com/pairguard/pairguard/firmware/console"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
	"github.com/pairguard/pairguard/firmware/frame/pcapfile"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, control.Usage())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1], os.Args[2:], os.Stdout)
	stop()
	var ue *control.UsageError
	var ee exitError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "pairguard: %v\n\n%s", err, control.Usage())
		os.Exit(2)
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintf(os.Stderr, "pairguard: %v\n", err)
		os.Exit(1)
	}
}

// exitError ends the program with a status and no message (is-primary);
// the console shows the message.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &control.UsageError{Err: fmt.Errorf(format, args...)}
}

// run runs one command of the command table (control.Commands).
func run(ctx context.Context, cmd string, args []string, out io.Writer) error {
	switch cmd {
	case "run":
		return runDaemon(args)
	case "check-config":
		if len(args) != 1 {
			return usagef("check-config needs one FILE")
		}
		c, err := config.Load(args[0])
		if err != nil {
			return err
		}
		if c.IsArbiter() {
			fmt.Fprintf(out, "%s: ok (mode arbiter, listen %s, %d pairs)\n", args[0], c.Arbiter.Listen, len(c.Arbiter.Keys))
			return nil
		}
		fmt.Fprintf(out, "%s: ok (mode %s, heartbeat %v, failover-time %v)\n", args[0], c.Mode, c.Heartbeat.Interval, c.Heartbeat.FailoverTime)
		return nil
	case "arbiter-key":
		return arbiterKey(args, out)
	case "version", "--version":
		fmt.Fprintln(out, "pairguard", daemon.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(out, control.Usage())
		return nil
	case "console":
		return runConsole(args)
	case "snapshot":
		return runSnapshot(args, out)
	}
	return client(ctx, cmd, args, out)
}

// client runs one client command against the control socket.
func client(ctx context.Context, cmd string, args []string, out io.Writer) error {
	c, ok := control.Lookup(cmd)
	if !ok || !c.Sent() {
		return usagef("unknown command %q", cmd)
	}
	inv, err := c.Parse(args, defaultSocket())
	if err != nil {
		return err
	}
	if inv.Req.Follow {
		return follow(ctx, inv, out)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = control.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := control.Do(ctx, inv.Socket, inv.Req)
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	switch cmd {
	case "capture":
		return writeCapture(inv.Write, resp.Data, out)
	case "is-primary":
		var p daemon.IsPrimary
		if err := json.Unmarshal(resp.Data, &p); err != nil {
			return fmt.Errorf("is-primary: %w", err)
		}
		if inv.JSON {
			fmt.Fprintf(out, "%s\n", resp.Data)
		}
		if !p.Primary {
			return exitError{1, "not primary (role " + p.Role + ")"}
		}
		return nil
	}
	if inv.JSON && len(resp.Data) > 0 {
		_, err := fmt.Fprintf(out, "%s\n", resp.Data)
		return err
	}
	_, err = io.WriteString(out, resp.Text)
	return err
}

// follow prints the stream of `log --follow` until ctx ends (Ctrl-C) or the
// daemon stops: one line each, or one JSON object each with --json.
func follow(ctx context.Context, inv control.Invocation, out io.Writer) error {
	print := func(r control.Response) error {
		var err error
		if inv.JSON {
			_, err = fmt.Fprintf(out, "%s\n", r.Data)
		} else {
			_, err = io.WriteString(out, r.Text)
		}
		return err
	}
	resp, err := control.Stream(ctx, inv.Socket, inv.Req, print)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if !inv.JSON {
		_, err = io.WriteString(out, resp.Text)
	}
	return err
}

func defaultSocket() string {
	if s := os.Getenv("PAIRGUARD_SOCKET"); s != "" {
		return s
	}
	return config.DefaultSocket
}

func writeCapture(path string, data []byte, out io.Writer) error {
	var frames []daemon.CapturedFrame
	if err := json.Unmarshal(data, &frames); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := pcapfile.NewWriter(f)
	if err != nil {
		f.Close()
		return err
	}
	for _, c := range frames {
		src, _ := net.ParseMAC(c.Src)
		if err := w.Write(pcapfile.Record{Time: c.Time, Dst: broadcast, Src: src, Payload: c.Payload}); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d frames written to %s\n", len(frames), path)
	return nil
}

func runDaemon(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := fs.String("config", "/etc/pairguard/pairguard.toml", "config file")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return &control.UsageError{Err: err}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usagef("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.IsArbiter() {
		return runArbiter(cfg, *cfgPath, log)
	}
	// Heartbeats must not starve on a busy board (keepalived raises its
	// priority for the same reason).
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *cfg.Nice); err != nil {
		log.Warn("cannot raise the daemon's priority", "nice", *cfg.Nice, "err", err)
	}
	tuneMemory(cfg, log)
	lockMemory(cfg, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	for {
		d, err := daemon.Open(ctx, cfg, log)
		if err != nil {
			return err
		}
		srv, err := control.Listen(cfg.Control.Socket)
		if err != nil {
			return err
		}
		log.Info("pairguard running", "mode", cfg.Mode, "node", cfg.NodeName, "socket", cfg.Control.Socket)
		err = serve(ctx, d, srv, *cfgPath, log)
		if !errors.Is(err, daemon.ErrRestart) || ctx.Err() != nil {
			return err
		}
		// A spare taught in: start again with the main's settings.
		log.Info("starting again with the pair record")
	}
}

// serve runs the daemon, its control socket and the SIGHUP reloads until
// ctx ends and the daemon has stopped; every goroutine has ended when it
// returns.
func serve(ctx context.Context, d *daemon.Daemon, srv *control.Server, cfgPath string, log *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{})
	// The socket outlives ctx while the daemon hands over: it closes when
	// the daemon has stopped.
	sctx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	wg.Go(func() {
		if err := srv.Serve(sctx, d.Handle); err != nil {
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
			case <-done:
				return
			}
			next, err := config.Load(cfgPath)
			if err != nil {
				log.Error("reload refused: the config is invalid", "err", err)
				continue
			}
			d.Reload(sctx, next)
		}
	})
	err := d.Run(ctx)
	close(done)
	stopServing()
	return err
}

func runConsole(args []string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	tty := fs.String("tty", "", "serial device")
	socket := fs.String("socket", defaultSocket(), "control socket")
	if err := fs.Parse(args); err != nil {
		return &control.UsageError{Err: err}
	}
	if *tty == "" {
		return usagef("console needs --tty DEV")
	}
	return console(*tty, *socket)
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// console serves the client commands on a serial terminal.
func console(tty, socket string) error {
	rw, err := pgconsole.OpenTTY(tty)
	if err != nil {
		return err
	}
	defer rw.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return pgconsole.Run(ctx, rw, func(ctx context.Context, args []string, out io.Writer) error {
		if len(args) == 0 {
			return nil
		}
		cmd, rest := args[0], args[1:]
		if cmd == "pairguard" && len(rest) > 0 {
			cmd, rest = rest[0], rest[1:]
		}
		c, ok := control.Lookup(cmd)
		switch {
		case !ok:
			return fmt.Errorf("unknown command %q; help lists them", cmd)
		case !c.Console:
			return fmt.Errorf("%s is not available on the console", cmd)
		case !c.Sent():
			return run(ctx, cmd, rest, out)
		}
		return client(ctx, cmd, append([]string{"--socket", socket}, rest...), out)
	})
}
