package main

import (
	"encoding/binary"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// HBWatch records, in the spare's namespace, when the main's heartbeats
// arrive: Pairguard's frames (EtherType 0x88B5, on LAN 2 and LAN 1) and
// keepalived's VRRP adverts (IP protocol 112). The last arrival before the
// spare's first answer is where the standby's silence started, so the
// takeover's own cost is measured from there: first answer - (last
// heartbeat + detection time).
type HBWatch struct {
	fd   int
	mu   sync.Mutex
	last time.Time
	done chan struct{}
	wg   sync.WaitGroup
}

const etherTypePairguard = 0x88B5

// StartHBWatch opens a packet socket on every interface of ns.
func StartHBWatch(ns string) (*HBWatch, error) {
	w := &HBWatch{fd: -1, done: make(chan struct{})}
	err := inNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		w.fd = fd
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if w.fd >= 0 {
			unix.Close(w.fd)
		}
		return nil, err
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

func (w *HBWatch) run() {
	defer w.wg.Done()
	buf := make([]byte, 2048)
	for {
		select {
		case <-w.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(w.fd, buf, 0)
		at := time.Now()
		if err != nil || n < 14 {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		et := binary.BigEndian.Uint16(buf[12:14])
		hb := et == etherTypePairguard || (et == unix.ETH_P_IP && n >= 34 && buf[14+9] == 112)
		if hb {
			w.mu.Lock()
			w.last = at
			w.mu.Unlock()
		}
	}
}

// Last returns the arrival of the last heartbeat seen.
func (w *HBWatch) Last() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Close stops the watch.
func (w *HBWatch) Close() {
	close(w.done)
	w.wg.Wait()
	unix.Close(w.fd)
}
