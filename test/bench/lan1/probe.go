package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/test/netns"
)

// inNS runs fn on an OS thread that has entered the network namespace ns.
// Sockets fn opens stay in ns and can be used from any goroutine. The thread
// is never unlocked, so it dies with its goroutine instead of going back to
// the scheduler in the wrong namespace.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("lan1: %w", err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("lan1: setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// macOf returns the MAC address of ifname in ns.
func macOf(ns, ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("lan1: %s in %s: %w", ifname, ns, err)
		}
		mac = ifi.HardwareAddr
		return nil
	})
	return mac, err
}

// reply is one ICMP echo reply the client received from the service address.
type reply struct {
	at  time.Time
	mac string // the Ethernet source: which node answered
	seq uint16
}

// Probe is the client: an ICMP echo to the service address every period,
// from the client namespace, and a packet socket that records every echo
// reply with the MAC of the node that sent it.
type Probe struct {
	send, recv int
	id         uint16
	period     time.Duration
	mu         sync.Mutex
	replies    []reply
	sent       int
	done       chan struct{}
	wg         sync.WaitGroup
}

// StartProbe starts the client probe in ns.
func StartProbe(ns string, period time.Duration) (*Probe, error) {
	p := &Probe{send: -1, recv: -1, id: uint16(os.Getpid()), period: period, done: make(chan struct{})}
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth1")
		if err != nil {
			return fmt.Errorf("lan1: client eth1: %w", err)
		}
		if p.send, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP); err != nil {
			return fmt.Errorf("lan1: raw icmp socket: %w", err)
		}
		// The sending socket reads nothing: filter out every ICMP type.
		unix.SetsockoptInt(p.send, unix.SOL_RAW, 1 /* ICMP_FILTER */, -1)
		proto := int(htons(unix.ETH_P_IP))
		if p.recv, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto); err != nil {
			return fmt.Errorf("lan1: packet socket: %w", err)
		}
		if err := unix.Bind(p.recv, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("lan1: bind packet socket: %w", err)
		}
		if err := stampOn(p.recv); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(p.recv, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		p.closeFDs()
		return nil, err
	}
	p.wg.Add(2)
	go p.sender()
	go p.receiver()
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (p *Probe) closeFDs() {
	if p.send >= 0 {
		unix.Close(p.send)
	}
	if p.recv >= 0 {
		unix.Close(p.recv)
	}
}

// Close stops the probe.
func (p *Probe) Close() {
	close(p.done)
	p.wg.Wait()
	p.closeFDs()
}

func (p *Probe) sender() {
	defer p.wg.Done()
	dst := &unix.SockaddrInet4{Addr: netip.MustParseAddr(netns.ServiceAddr).As4()}
	t := time.NewTicker(p.period)
	defer t.Stop()
	var seq uint16
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		seq++
		pkt := make([]byte, 16)
		pkt[0] = 8 // echo request
		binary.BigEndian.PutUint16(pkt[4:], p.id)
		binary.BigEndian.PutUint16(pkt[6:], seq)
		binary.BigEndian.PutUint64(pkt[8:], uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint16(pkt[2:], checksum(pkt))
		// Errors (no neighbour yet, host unreachable) are part of what
		// the client sees: the request is simply lost.
		unix.Sendto(p.send, pkt, 0, dst)
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
	}
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func (p *Probe) receiver() {
	defer p.wg.Done()
	svc := netip.MustParseAddr(netns.ServiceAddr).As4()
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for {
		select {
		case <-p.done:
			return
		default:
		}
		n, from, at, err := recvStamped(p.recv, buf, oob)
		if err != nil {
			continue // timeout: look at done again
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || n < 28 {
			continue
		}
		ip := buf[:n]
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ip[9] != 1 || [4]byte(ip[12:16]) != svc || n < ihl+8 {
			continue
		}
		icmp := ip[ihl:]
		if icmp[0] != 0 || binary.BigEndian.Uint16(icmp[4:]) != p.id {
			continue
		}
		mac := net.HardwareAddr(ll.Addr[:ll.Halen]).String()
		p.mu.Lock()
		p.replies = append(p.replies, reply{at: at, mac: mac, seq: binary.BigEndian.Uint16(icmp[6:])})
		p.mu.Unlock()
	}
}

// WaitReply waits until a reply from mac arrives at or after since; it
// returns its arrival time.
func (p *Probe) WaitReply(mac net.HardwareAddr, since time.Time, timeout time.Duration) (time.Time, error) {
	want := mac.String()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, r := range p.replies {
			if r.mac == want && !r.at.Before(since) {
				p.mu.Unlock()
				return r.at, nil
			}
		}
		p.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("lan1: no echo reply from %s within %v", want, timeout)
}

// Trim forgets the replies received so far.
func (p *Probe) Trim() {
	p.mu.Lock()
	p.replies = p.replies[:0]
	p.mu.Unlock()
}

// arpResponders sends an ARP request for the service address from the client
// every 100 ms during d and returns, for every MAC that answered for it or
// announced it, the number of answers and of gratuitous announcements
// (keys "MAC answers" and "MAC gratuitous").
func arpResponders(ns string, d time.Duration) (map[string]int, error) {
	var c *arp.Client
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth1")
		if err != nil {
			return fmt.Errorf("lan1: client eth1: %w", err)
		}
		if c, err = arp.Dial(ifi); err != nil {
			return fmt.Errorf("lan1: arp: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	svc := netip.MustParseAddr(netns.ServiceAddr)
	end := time.Now().Add(d)
	got := map[string]int{}
	done := make(chan error, 1)
	go func() {
		for {
			c.SetReadDeadline(end)
			pkt, _, err := c.Read()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					done <- nil
				} else {
					done <- err
				}
				return
			}
			// Answers to the client's requests and gratuitous ARP (target
			// the service address itself) both steer the client's cache.
			if (pkt.Operation == arp.OperationReply || pkt.TargetIP == svc) && pkt.SenderIP == svc {
				kind := "answers"
				if pkt.TargetIP == svc {
					kind = "gratuitous"
				}
				got[pkt.SenderHardwareAddr.String()+" "+kind]++
			}
		}
	}()
	for time.Now().Before(end) {
		if err := c.Request(svc); err != nil {
			return nil, fmt.Errorf("lan1: arp request: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := <-done; err != nil {
		return nil, fmt.Errorf("lan1: arp read: %w", err)
	}
	return got, nil
}

// median returns the middle value of ts (sorted in place).
func median(ts []time.Duration) time.Duration {
	slices.Sort(ts)
	return ts[len(ts)/2]
}
