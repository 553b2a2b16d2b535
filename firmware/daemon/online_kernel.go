package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pairguard/pairguard/drivers/nbd"
	nbdsrv "github.com/pairguard/pairguard/sdcard/nbd"
)

// [datastore] nbd-device: the kernel's NBD client attached to the
// primary's export over socket pairs (drivers/nbd), so that a filesystem
// mounted on it outlives the daemon's restarts.
//
//   - The node becomes primary: a device still connected with Pairguard's
//     identifier (an earlier run of this node's daemon died under a
//     mounted filesystem, whose I/O now stalls) gets fresh sockets by
//     RECONFIGURE; a free device is CONNECTed. Either way before
//     SetPrimary returns, so before the to-primary hook.
//   - A socket ends while the node is primary (the kernel dropped it after
//     a request timeout, or did not take it because it had not yet seen
//     the old connection die): the keeper makes a new pair and
//     RECONFIGUREs, again and again with a growing pause, until the kernel
//     keeps one.
//   - Demotion: DISCONNECT; I/O on the device fails from then on.
//   - The daemon stops while primary (killed, crashed, or a handover that
//     did not finish): the device stays connected and its I/O stalls, up
//     to the dead-connection timeout, for the next daemon's RECONFIGURE.
//   - A node whose daemon starts and becomes secondary, and finds the
//     device connected with Pairguard's identifier, DISCONNECTs it: the
//     peer is primary now, a filesystem still mounted here must fail.
const (
	// kernelSockets is the number of connections (the kernel's queues).
	kernelSockets = 2
	// KernelIdentifier is the backend identifier of the devices the
	// daemon attaches (/sys/block/nbdN/backend); the kernel refuses a
	// RECONFIGURE that does not name it.
	KernelIdentifier = "pairguard"
	// keeperMaxPause bounds the pause between two attempts of the keeper.
	keeperMaxPause = 2 * time.Second
)

// kernelTimeouts returns the device's request timeout and its
// dead-connection timeout. A request unanswered for the request timeout
// is resent on another connection (with two connections the kernel never
// fails it for a timeout) and its connection dropped, which the keeper
// replaces: four failover-times, at least 10 s, stays clear of a sync
// write waiting failover-time for a lost peer. With every connection dead
// I/O waits for the dead-connection timeout: long enough for the init
// script's respawn, the daemon's start and its engine's
// connection-wait-time, with a minute to spare.
func kernelTimeouts(failover, connectionWait time.Duration) (request, deadConn time.Duration) {
	return max(10*time.Second, 4*failover), connectionWait + time.Minute
}

// kernelExport is one attachment of nbd-device to the primary's server.
type kernelExport struct {
	a      nbd.Attacher
	index  int
	dev    string
	srv    *nbdsrv.Server
	reconf nbd.Reconfig
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	lost   chan struct{} // one token per server end that ended
	wg     sync.WaitGroup

	mu         sync.Mutex // serialises the keeper's RECONFIGURE with detach
	detached   bool
	reconnects int
}

// attachKernel attaches device index to srv: RECONFIGURE if the kernel
// still has it connected, else CONNECT. reconfigured says which.
func attachKernel(a nbd.Attacher, index int, srv *nbdsrv.Server, failover, connectionWait time.Duration, log *slog.Logger) (k *kernelExport, reconfigured bool, err error) {
	timeout, deadConn := kernelTimeouts(failover, connectionWait)
	k = &kernelExport{
		a: a, index: index, dev: fmt.Sprintf("/dev/nbd%d", index), srv: srv, log: log,
		reconf: nbd.Reconfig{Identifier: KernelIdentifier, Timeout: timeout, DeadConnTimeout: deadConn},
		lost:   make(chan struct{}, 64),
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	connected, err := a.Status(index)
	if err != nil {
		return nil, false, err
	}
	if connected {
		id, err := a.Identifier(index)
		if err != nil {
			return nil, false, err
		}
		if id != KernelIdentifier {
			return nil, false, fmt.Errorf("%s is in use by another NBD server (backend %q)", k.dev, id)
		}
	}
	kernel, server, err := k.pairs(kernelSockets)
	if err != nil {
		k.cancel()
		return nil, false, err
	}
	if connected {
		err = a.Reconfigure(index, k.reconf, kernel)
	} else {
		_, err = a.Connect(nbd.Config{Index: index, Size: srv.Size(), BlockSize: 4096, ServerFlags: uint64(srv.Flags()),
			Timeout: timeout, DeadConnTimeout: deadConn, Identifier: KernelIdentifier}, kernel)
	}
	closeFiles(kernel) // the kernel holds its own references
	if err != nil {
		k.cancel()
		for _, c := range server {
			c.Close()
		}
		k.wg.Wait()
		return nil, false, err
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.keep()
	}()
	return k, connected, nil
}

// pairs makes n socket pairs and serves their server ends; each end that
// returns leaves a token in lost.
func (k *kernelExport) pairs(n int) ([]*os.File, []net.Conn, error) {
	kernel, server, err := nbd.SocketPairs(n)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range server {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			err := k.srv.ServeTransmission(c)
			if k.ctx.Err() != nil {
				return
			}
			k.log.Debug("nbd connection ended", "device", k.dev, "err", err)
			select {
			case k.lost <- struct{}{}:
			default:
			}
		}()
	}
	return kernel, server, nil
}

// keep replaces every connection that ended while the device is attached.
func (k *kernelExport) keep() {
	pause := 50 * time.Millisecond
	last := time.Now()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-k.lost:
		}
		if time.Since(last) > 10*keeperMaxPause {
			pause = 50 * time.Millisecond
		}
		last = time.Now()
		// The kernel marks a connection dead a moment after its server
		// end closed; a socket given before that is dropped.
		select {
		case <-k.ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, keeperMaxPause)
		if err := k.replace(); err != nil {
			k.log.Warn("cannot give the kernel a new NBD connection", "device", k.dev, "err", err)
			select {
			case k.lost <- struct{}{}:
			default:
			}
		}
	}
}

// replace hands the kernel one new connection.
func (k *kernelExport) replace() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.detached {
		return nil
	}
	kernel, _, err := k.pairs(1)
	if err != nil {
		return err
	}
	err = k.a.Reconfigure(k.index, k.reconf, kernel)
	closeFiles(kernel)
	if err == nil {
		k.reconnects++
		k.log.Debug("nbd connection replaced", "device", k.dev)
	}
	return err
}

// detach stops the keeper and, if disconnect, DISCONNECTs the device;
// otherwise the device stays connected and stalls once the server's ends
// close. The server's Shutdown ends the serving goroutines; wait waits for
// them.
func (k *kernelExport) detach(disconnect bool) error {
	k.cancel()
	k.mu.Lock()
	k.detached = true
	k.mu.Unlock()
	var err error
	if disconnect {
		err = k.a.Disconnect(k.index)
	}
	return errors.Join(err, k.a.Close())
}

func (k *kernelExport) wait() { k.wg.Wait() }

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// disconnectStale DISCONNECTs device index if an earlier run of this
// node's daemon left it connected (Pairguard's identifier); it reports
// whether it did.
func disconnectStale(a nbd.Attacher, index int) (bool, error) {
	connected, err := a.Status(index)
	if err != nil || !connected {
		return false, err
	}
	id, err := a.Identifier(index)
	if err != nil || id != KernelIdentifier {
		return false, err
	}
	return true, a.Disconnect(index)
}
