package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/pairguard/pairguard/drivers/addr"
	"github.com/pairguard/pairguard/drivers/arp"
	"github.com/pairguard/pairguard/drivers/ndp"
	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/pairing"
)

// macvlanName is the interface that carries the service address with
// `[lan1] virtual-mac`.
const macvlanName = "pgvmac0"

// Open opens the real drivers for cfg and returns a daemon ready to Run.
// ctx is not kept: Run watches the links with its own context.
// A missing failover-line interface is fatal; a LAN 1 that cannot carry
// heartbeats is a warning (the second path is lost, the guard probes still).
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	cfg, _, err := withPairRecord(cfg)
	if err != nil && !errors.Is(err, pairing.ErrRecord) { // a damaged record: New says so
		return nil, err
	}
	var deps Deps
	closeAll := func() {
		for _, c := range deps.Closers {
			c()
		}
	}
	if cfg.Engine.Mode != engine.ModeIndependent {
		// At short intervals the loop takes the frames when it wakes up
		// anyway, from sockets no thread waits on (drain.go).
		listen := rawether.Listen
		if cfg.Engine.Interval <= drainMax {
			listen = func(ifname string, etherType uint16, f *rawether.Filter) (rawether.Conn, error) {
				c, err := rawether.ListenQuiet(ifname, etherType, f)
				if err != nil {
					// A kernel (or emulator) without what drain mode
					// needs: receive goroutines, as at longer intervals.
					log.Warn("drain mode unavailable; a goroutine waits for the frames", "interface", ifname, "err", err)
					return rawether.Listen(ifname, etherType, f)
				}
				return c, nil
			}
		}
		lan2, err := listen(cfg.LAN2.Interface, frame.EtherType, listenFilter(cfg))
		if err != nil {
			return nil, fmt.Errorf("lan2.interface %q: %w", cfg.LAN2.Interface, err)
		}
		deps.LAN2 = lan2
		deps.Closers = append(deps.Closers, lan2.Close)
		if cfg.LAN1.Interface != "" {
			lan1, err := listen(cfg.LAN1.Interface, frame.EtherType, listenFilter(cfg))
			if err != nil {
				log.Warn("no heartbeats on LAN 1; a cut failover line will look like a dead peer to the guard's first check", "interface", cfg.LAN1.Interface, "err", err)
			} else {
				deps.LAN1 = lan1
				deps.Closers = append(deps.Closers, lan1.Close)
			}
		}
		for _, l := range []struct {
			name string
			path engine.Path
		}{{cfg.LAN2.Interface, engine.PathLAN2}, {cfg.LAN1.Interface, engine.PathLAN1}} {
			if l.name == "" {
				continue
			}
			deps.Links = append(deps.Links, LinkWatch{Path: l.path, Watch: func(ctx context.Context) (<-chan rawether.LinkEvent, error) {
				return rawether.WatchLink(ctx, l.name)
			}})
		}
	}
	if cfg.LAN1.Interface != "" && cfg.LAN1.Prefix.IsValid() {
		a, err := arp.Open(cfg.LAN1.Interface)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("lan1.interface %q: ARP: %w", cfg.LAN1.Interface, err)
		}
		deps.Closers = append(deps.Closers, a.Close)
		if cfg.LAN1.VirtualMAC {
			vmac := addr.VirtualMAC(frame.PairID(cfg.Key))
			m, err := addr.OpenMacvlan(cfg.LAN1.Interface, macvlanName, vmac)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("lan1.virtual-mac: %w", err)
			}
			deps.Addr = m
			deps.ARP = vmacARP{a, vmac}
			deps.Closers = append(deps.Closers, m.Close)
		} else {
			m, err := addr.Open(cfg.LAN1.Interface)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("lan1.interface %q: %w", cfg.LAN1.Interface, err)
			}
			deps.Addr = m
			deps.ARP = a
			deps.Closers = append(deps.Closers, m.Close)
		}
	}
	if cfg.LAN1.Interface != "" && cfg.LAN1.Prefix6.IsValid() {
		ifname := cfg.LAN1.Interface
		if cfg.LAN1.VirtualMAC {
			ifname = macvlanName
		}
		n, err := ndp.Open(ifname)
		if err != nil {
			log.Warn("no IPv6 neighbour advertisements for service-address6", "interface", ifname, "err", err)
		} else {
			deps.NDP = n
			deps.Closers = append(deps.Closers, n.Close)
		}
	}
	if cfg.BoardDesc != nil {
		pnl, closers := OpenPanel(cfg.BoardDesc, cfg.Watchdog.Device, cfg.Watchdog.Timeout.Duration, log)
		deps.Panel = pnl
		deps.Closers = append(deps.Closers, closers...)
	}
	d, err := New(cfg, deps, log)
	if err != nil {
		closeAll()
		return nil, err
	}
	return d, nil
}

// vmacARP announces the virtual MAC instead of the interface's.
type vmacARP struct {
	arp.Client
	mac net.HardwareAddr
}

func (v vmacARP) HardwareAddr() net.HardwareAddr { return v.mac }
