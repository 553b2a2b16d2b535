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
	"syscall"
	"time"

	"github.com/pairguard/pairguard/firmware/config"
	pgconsole "github.com/pairguard/pairguard/firmware/console"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
	"github.com/pairguard/pairguard/firmware/frame/framepcap"
)

const usage = `usage: pairguard COMMAND [flags]

daemon:
  run --config FILE           run the daemon
  check-config FILE           check a config file and exit

client (each takes --socket PATH, or PAIRGUARD_SOCKET):
  status [--json]             role, peer, data, mirror and alarms
  log [-n N] [--json]         the logbook's newest entries
  swap                        planned handover to the peer (on the primary)
  takeover --force            become primary, overriding the guards
  ack                         acknowledge alarms and the failover LED
  sync                        start a datastore resync round now
  verify                      compare both datastores block by block
  resolve --keep-local|--discard-local   end a split brain, naming the side to keep
  capture -n N -w FILE        write the next N failover-line frames as pcap
  leds test                   walk every LED and colour
  console --tty DEV           these commands as a prompt on a serial console
  snapshot -w FILE.tar.gz     collect status, logbook, config (keys redacted),
                              a capture, versions, board, kernel and links
  version                     print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	err := run(os.Args[1], os.Args[2:], os.Stdout)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "pairguard: %v\n\n%s", err, usage)
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "pairguard: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func run(cmd string, args []string, out io.Writer) error {
	switch cmd {
	case "run":
		return runDaemon(args)
	case "check-config":
		if len(args) != 1 {
			return usageError{errors.New("check-config needs one FILE")}
		}
		c, err := config.Load(args[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: ok (mode %s, heartbeat %v, failover-time %v)\n", args[0], c.Mode, c.Heartbeat.Interval, c.Heartbeat.FailoverTime)
		return nil
	case "version", "--version":
		fmt.Fprintln(out, "pairguard", daemon.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(out, usage)
		return nil
	case "console":
		return runConsole(args)
	case "snapshot":
		return runSnapshot(args, out)
	}
	return client(context.Background(), cmd, args, out)
}

// client runs one client command against the control socket.
func client(ctx context.Context, cmd string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", defaultSocket(), "control socket")
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("n", 20, "count")
	force := fs.Bool("force", false, "force")
	write := fs.String("w", "", "pcap file")
	keepLocal := fs.Bool("keep-local", false, "resolve: keep this node's data")
	discardLocal := fs.Bool("discard-local", false, "resolve: discard this node's data")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	req := control.Request{Cmd: cmd}
	switch cmd {
	case "status", "swap", "ack", "sync", "verify":
	case "log":
		req.Args = []string{"-n", fmt.Sprint(*n)}
	case "takeover":
		if !*force {
			return usageError{errors.New("takeover needs --force")}
		}
		req.Args = []string{"--force"}
	case "capture":
		if *write == "" {
			return usageError{errors.New("capture needs -w FILE")}
		}
		req.Args = []string{"-n", fmt.Sprint(*n)}
	case "resolve":
		if *keepLocal == *discardLocal {
			return usageError{errors.New("resolve needs exactly one of --keep-local or --discard-local")}
		}
		req.Args = []string{"--discard-local"}
		if *keepLocal {
			req.Args = []string{"--keep-local"}
		}
	case "leds":
		if fs.Arg(0) != "test" {
			return usageError{errors.New("leds: the only subcommand is test")}
		}
		req.Args = []string{"test"}
	default:
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
	timeout := 10 * time.Second
	if cmd == "capture" || cmd == "verify" || cmd == "leds" || cmd == "resolve" {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := control.Do(ctx, *socket, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if cmd == "capture" {
		return writeCapture(*write, resp.Data, out)
	}
	if *asJSON && len(resp.Data) > 0 {
		_, err := fmt.Fprintf(out, "%s\n", resp.Data)
		return err
	}
	_, err = io.WriteString(out, resp.Text)
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
	w, err := framepcap.NewWriter(f)
	if err != nil {
		f.Close()
		return err
	}
	for _, c := range frames {
		src, _ := net.ParseMAC(c.Src)
		if err := w.Write(framepcap.Record{Time: c.Time, Dst: broadcast, Src: src, Payload: c.Payload}); err != nil {
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
		return usageError{err}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	// Heartbeats must not starve on a busy board (keepalived raises its
	// priority for the same reason).
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *cfg.Nice); err != nil {
		log.Warn("cannot raise the daemon's priority", "nice", *cfg.Nice, "err", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	srv, err := control.Listen(cfg.Control.Socket)
	if err != nil {
		return err
	}
	defer srv.Close()
	go srv.Serve(ctx, d.Handle)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			next, err := config.Load(*cfgPath)
			if err != nil {
				log.Error("reload refused: the config is invalid", "err", err)
				continue
			}
			d.Reload(next)
		}
	}()
	log.Info("pairguard running", "mode", cfg.Mode, "node", cfg.NodeName, "socket", cfg.Control.Socket)
	return d.Run(ctx)
}

func runConsole(args []string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	tty := fs.String("tty", "", "serial device")
	socket := fs.String("socket", defaultSocket(), "control socket")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *tty == "" {
		return usageError{errors.New("console needs --tty DEV")}
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
		switch cmd {
		case "run", "console":
			return fmt.Errorf("%s is not available on the console", cmd)
		case "check-config", "version":
			return run(cmd, rest, out)
		}
		return client(ctx, cmd, append([]string{"--socket", socket}, rest...), out)
	})
}
