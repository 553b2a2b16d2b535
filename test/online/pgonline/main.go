// Command pgonline runs one node of the online replication without the
// rest of the daemon, for the namespace tests and the benchmark: the
// write path (sdcard/online) behind the NBD server (sdcard/nbd) on a Unix
// socket, or the secondary applying the stream.
//
//	pgonline -dev IMG -state DIR -sock SOCK [-peer HOST:PORT] [-replication sync|async] [-key HEX]
//	pgonline -dev IMG -state DIR -listen :PORT [-sock SOCK] [-key HEX]
//
// -cpuprofile FILE writes a CPU profile until the node stops (SIGTERM).
//
// With -listen the node is the secondary; SIGUSR1 makes it take over: it
// stops accepting the stream and serves its copy on -sock as a primary
// without peer. It prints "ready" on stdout once it serves (or listens),
// and "primary" after a takeover.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/sdcard"
	"github.com/pairguard/pairguard/sdcard/nbd"
	"github.com/pairguard/pairguard/sdcard/online"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pgonline:", err)
		os.Exit(1)
	}
}

func run() error {
	dev := flag.String("dev", "", "datastore image or device")
	state := flag.String("state", "", "state directory")
	sock := flag.String("sock", "", "NBD Unix socket (primary)")
	peer := flag.String("peer", "", "secondary's address (primary); none: no peer")
	listen := flag.String("listen", "", "listen address (secondary)")
	repl := flag.String("replication", "sync", "sync or async")
	congestion := flag.String("on-congestion", "block", "block or pull-ahead (async)")
	keyHex := flag.String("key", "000102030405060708090a0b0c0d0e0f", "pair key, hex")
	failover := flag.Duration("failover-time", 500*time.Millisecond, "failover-time")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until the node stops")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	key, err := hex.DecodeString(*keyHex)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d, err := sdcard.OpenDevice(*dev, sdcard.DefaultBlockSize)
	if err != nil {
		return err
	}
	defer d.Close()
	store := sdcard.DirStore(*state)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	mode, err := online.ParseReplication(*repl)
	if err != nil {
		return err
	}
	if *congestion != "block" && *congestion != "pull-ahead" {
		return fmt.Errorf("-on-congestion: want block or pull-ahead, not %q", *congestion)
	}
	cfg := online.Config{Device: d, Store: store, Replication: mode, PullAhead: *congestion == "pull-ahead",
		FailoverTime: *failover, Logger: log}

	if *listen != "" {
		s, err := online.OpenSecondary(d, store, log)
		if err != nil {
			return err
		}
		l, err := online.Listen(*listen, key)
		if err != nil {
			return err
		}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(sctx, l) }()
		fmt.Println("ready")
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-usr1:
		}
		stop()
		<-done // Run returns once the stream it applied has stopped
		return servePrimary(ctx, cfg, *sock, "", key, log, "primary")
	}
	return servePrimary(ctx, cfg, *sock, *peer, key, log, "ready")
}

func servePrimary(ctx context.Context, cfg online.Config, sock, peer string, key []byte, log *slog.Logger, banner string) error {
	p, err := online.OpenPrimary(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	if peer != "" {
		dial, err := online.Dialer(peer, key, 2*time.Second)
		if err != nil {
			return err
		}
		go p.Run(ctx, dial)
		for !p.Status().InSync {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	srv, err := nbd.NewServer(p, nbd.Options{MinBlock: 512, Logger: log})
	if err != nil {
		return err
	}
	l, err := nbd.ListenUnix(sock)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Println(banner)
	if err := srv.Serve(l); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
		return err
	}
	return p.Flush()
}
