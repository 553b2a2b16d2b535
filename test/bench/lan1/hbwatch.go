package main

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/test/netns"
)

// HBWatch records, in the spare's namespace, when the main's heartbeats
// arrive: Pairguard's frames (EtherType 0x88B5, on LAN 2 and LAN 1) and
// keepalived's VRRP adverts (IP protocol 112). The last arrival before the
// spare's first answer is where the standby's silence started, so the
// takeover's own cost is measured from there: first answer - (last
// heartbeat + detection time). It also records the spare's first
// gratuitous ARP for the service address (sent, sender and target address
// alike), which splits that cost into the spare's part (detection's end to
// the announcement) and the client's (the announcement to the first answer).
type HBWatch struct {
	fd   int
	svc  [4]byte
	mu   sync.Mutex
	last time.Time
	garp []time.Time // the spare's gratuitous ARPs, in order
	done chan struct{}
	wg   sync.WaitGroup
}

const etherTypePairguard = 0x88B5

// StartHBWatch opens a packet socket on every interface of ns.
func StartHBWatch(ns string) (*HBWatch, error) {
	w := &HBWatch{fd: -1, svc: netip.MustParseAddr(netns.ServiceAddr).As4(), done: make(chan struct{})}
	err := inNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		w.fd = fd
		if err := stampOn(fd); err != nil {
			return err
		}
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
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for {
		select {
		case <-w.done:
			return
		default:
		}
		n, from, at, err := recvStamped(w.fd, buf, oob)
		if err != nil || n < 14 {
			continue
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		et := binary.BigEndian.Uint16(buf[12:14])
		if ll.Pkttype == unix.PACKET_OUTGOING {
			// ARP for IPv4: sender address at 14+14, target at 14+24.
			if et == unix.ETH_P_ARP && n >= 42 && [4]byte(buf[28:32]) == w.svc && [4]byte(buf[38:42]) == w.svc {
				w.mu.Lock()
				if len(w.garp) < 1000 {
					w.garp = append(w.garp, at)
				}
				w.mu.Unlock()
			}
			continue
		}
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

// GARP returns when the spare sent its first gratuitous ARP for the
// service address after t (zero: none seen).
func (w *HBWatch) GARP(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.garp {
		if a.After(t) {
			return a
		}
	}
	return time.Time{}
}

// Close stops the watch.
func (w *HBWatch) Close() {
	close(w.done)
	w.wg.Wait()
	unix.Close(w.fd)
}

// stampOn asks the kernel to date the frames a socket receives
// (SO_TIMESTAMPNS): the bench's own scheduling then does not move the
// times it measures.
func stampOn(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
}

// recvStamped is recvfrom with the kernel's arrival time of the frame
// (now when the kernel gave none).
func recvStamped(fd int, buf, oob []byte) (int, unix.Sockaddr, time.Time, error) {
	n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
	at := time.Now()
	if err != nil {
		return 0, nil, at, err
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			at = time.Unix(int64(ts.Sec), int64(ts.Nsec))
		}
	}
	return n, from, at, nil
}
