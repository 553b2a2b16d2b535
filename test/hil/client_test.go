package hil

import (
	"bufio"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pinger pings an address from the client namespace every 50 ms and records
// when replies arrive (ping -D timestamps, the host's wall clock).
type pinger struct {
	mu      sync.Mutex
	replies []time.Time
	cmd     *exec.Cmd
}

var pingReply = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from`)

func startPinger(t *testing.T, addr string) *pinger {
	t.Helper()
	p := &pinger{cmd: exec.Command("ip", "netns", "exec", nsClient, "ping", "-n", "-D", "-i", "0.05", addr)}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("hil: ping: %v", err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m := pingReply.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			sec, _ := strconv.ParseInt(m[1], 10, 64)
			usec, _ := strconv.ParseInt(m[2], 10, 64)
			p.mu.Lock()
			p.replies = append(p.replies, time.Unix(sec, usec*1000))
			p.mu.Unlock()
		}
	}()
	return p
}

// firstAfter waits for the first reply after t0 and returns its time.
func (p *pinger) firstAfter(t0 time.Time, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, r := range p.replies {
			if r.After(t0) {
				p.mu.Unlock()
				return r, true
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}, false
}

// clientPing checks that the client reaches addr.
func clientPing(t *testing.T, addr string) bool {
	t.Helper()
	err := exec.Command("ip", "netns", "exec", nsClient, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", addr).Run()
	return err == nil
}

// maxGap returns the longest time without a reply between from and to.
func (p *pinger) maxGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gap time.Duration
	last := from
	for _, r := range p.replies {
		if r.Before(from) || r.After(to) {
			continue
		}
		if d := r.Sub(last); d > gap {
			gap = d
		}
		last = r
	}
	if d := to.Sub(last); d > gap {
		gap = d
	}
	return gap
}
