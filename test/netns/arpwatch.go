package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	marp "github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ARPWatch asks for target's MAC from the client namespace every `every`
// for dur and records, per request, the MACs that answered it. It is the
// client's view of "who holds the service address", request by request.
type ARPWatch struct {
	mu     sync.Mutex
	rounds []map[string]bool // responders per request
	done   chan error
}

// WatchARP starts an ARP watch from namespace ns's eth1.
func WatchARP(ns string, target string, every, dur time.Duration) *ARPWatch {
	w := &ARPWatch{done: make(chan error, 1)}
	go func() { w.done <- w.run(ns, target, every, dur) }()
	return w
}

func (w *ARPWatch) run(ns, target string, every, dur time.Duration) error {
	// The thread enters the namespace and is never returned to the pool:
	// it ends with this goroutine.
	runtime.LockOSThread()
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return err
	}
	err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
	f.Close()
	if err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ifi, err := net.InterfaceByName("eth1")
	if err != nil {
		return err
	}
	pc, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return err
	}
	c, err := marp.New(ifi, pc)
	if err != nil {
		pc.Close()
		return err
	}
	defer c.Close()
	ip := netip.MustParseAddr(target)
	client := netip.MustParseAddr(ClientAddr)
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		resp := map[string]bool{}
		if err := c.Request(ip); err != nil {
			return err
		}
		deadline := time.Now().Add(every)
		for {
			c.SetReadDeadline(deadline)
			p, _, err := c.Read()
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				continue
			}
			// Answers to our request only: gratuitous replies (target = the
			// service address itself) announce, they do not answer.
			if p.Operation == marp.OperationReply && p.SenderIP == ip && p.TargetIP == client {
				resp[p.SenderHardwareAddr.String()] = true
			}
		}
		w.mu.Lock()
		w.rounds = append(w.rounds, resp)
		w.mu.Unlock()
	}
	return nil
}

// Wait waits for the watch to end and returns its rounds.
func (w *ARPWatch) Wait() ([]map[string]bool, error) {
	err := <-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rounds, err
}

// MAC returns the MAC of interface ifname in namespace ns.
func MAC(ns, ifname string) (string, error) {
	out, err := Exec(ns, "cat", "/sys/class/net/"+ifname+"/address")
	return strings.TrimSpace(out), err
}
