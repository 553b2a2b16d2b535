package pair

import (
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// Default timers of the pair with an arbiter: heartbeat 100 ms × 5, so a
// node asks for a lease of failover-time + 500 ms.
const (
	arbFailover = 500 * time.Millisecond
	arbLease    = arbFailover + 500*time.Millisecond
)

// setupArbiter builds the pair with an arbiter namespace on LAN 1, starts
// all three and waits until the main holds its lease (after the arbiter's
// start wait of one maximum lease).
func setupArbiter(t *testing.T) (*netns.Pair, *netns.Node) {
	t.Helper()
	if why := netns.NftAvailable(); why != "" && bin != "" {
		t.Skip(why)
	}
	p := setup(t, netns.Options{Extra: netns.ArbiterExtra()})
	a, err := p.AddArbiter()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(a.LogFile)
			t.Logf("arbiter log:\n%s", tail(string(log), 20))
		}
		if err := p.CloseArbiter(a); err != nil {
			t.Error(err)
		}
	})
	if err := p.Start(a); err != nil {
		t.Fatal(err)
	}
	startPair(t, p)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := p.Status(p.Main)
		if err == nil && m.Arbiter != nil && m.Arbiter.State == "granted" && m.Arbiter.Holder == m.NodeID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the main holds no lease after 10s: %+v (%v)", m.Arbiter, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s, err := p.Status(p.Spare)
	if err != nil || s.Arbiter == nil || s.Arbiter.State != "idle" || s.Role != "secondary" {
		t.Fatalf("spare %s, arbiter %+v (%v), want an idle secondary", s.Role, s.Arbiter, err)
	}
	return p, a
}

// sample is one poll of both nodes; a role "" means no answer.
type sample struct {
	at           time.Time
	main, spare  netns.Status
	mErr, sErr   error
	mRole, sRole string
}

// watcher polls both nodes' status every 20 ms.
type watcher struct {
	p    *netns.Pair
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	all  []sample
}

func watch(p *netns.Pair) *watcher {
	w := &watcher{p: p, stop: make(chan struct{})}
	w.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var s sample
			s.at = time.Now()
			s.main, s.mErr = p.Status(p.Main)
			s.spare, s.sErr = p.Status(p.Spare)
			if s.mErr == nil {
				s.mRole = s.main.Role
			}
			if s.sErr == nil {
				s.sRole = s.spare.Role
			}
			w.mu.Lock()
			w.all = append(w.all, s)
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	})
	return w
}

// done stops polling and returns the samples.
func (w *watcher) done() []sample {
	close(w.stop)
	w.wg.Wait()
	return w.all
}

// neverTwo fails the test at every poll that saw two primaries.
func neverTwo(t *testing.T, samples []sample) {
	t.Helper()
	n := 0
	for _, s := range samples {
		if s.mRole == "primary" && s.sRole == "primary" {
			n++
			if n == 1 {
				t.Errorf("two primaries at %s: main arbiter %+v, spare arbiter %+v", s.at.Format("15:04:05.000"), s.main.Arbiter, s.spare.Arbiter)
			}
		}
	}
	if n > 0 {
		t.Errorf("two primaries at %d of %d polls", n, len(samples))
	}
	if len(samples) < 20 {
		t.Errorf("only %d polls", len(samples))
	}
}

// first returns the first sample after start for which cond holds.
func first(samples []sample, start time.Time, cond func(sample) bool) (sample, bool) {
	for _, s := range samples {
		if !s.at.Before(start) && cond(s) {
			return s, true
		}
	}
	return sample{}, false
}

// (a) The nodes cannot exchange a frame on either LAN, but both reach the
// arbiter: the main keeps its lease and stays primary, the spare is denied
// and never primary, and it raises an alarm.
func TestArbiterPartitionNoSecondPrimary(t *testing.T) {
	p, a := setupArbiter(t)
	w := watch(p)
	if err := p.Partition(); err != nil {
		w.done()
		t.Fatal(err)
	}
	time.Sleep(arbLease + arbFailover + 3*time.Second)
	samples := w.done()
	neverTwo(t, samples)
	if s, ok := first(samples, time.Time{}, func(s sample) bool { return s.sRole == "primary" }); ok {
		t.Errorf("spare primary at %s (arbiter %+v)", s.at.Format("15:04:05.000"), s.spare.Arbiter)
	}
	last := samples[len(samples)-1]
	if last.mRole != "primary" || last.sRole != "secondary" {
		t.Errorf("roles after the partition: main %q spare %q", last.mRole, last.sRole)
	}
	if last.main.Peer.State == "up" || last.spare.Peer.State == "up" {
		t.Errorf("the partition did not cut the nodes apart: main peer %s, spare peer %s", last.main.Peer.State, last.spare.Peer.State)
	}
	if len(last.spare.Alarms) == 0 {
		t.Errorf("no alarm on the spare (arbiter %+v)", last.spare.Arbiter)
	}
	if last.spare.Arbiter == nil || last.spare.Arbiter.State != "denied" || last.spare.Arbiter.Holder != last.main.NodeID {
		t.Errorf("spare's arbiter %+v, want denied with the main (%s) holding", last.spare.Arbiter, last.main.NodeID)
	}
	st, err := p.ArbiterStatus(a)
	if err != nil || len(st.Pairs) != 1 || st.Pairs[0].Holder != last.main.NodeID || st.Pairs[0].LeaseMS <= 0 {
		t.Errorf("arbiter status %+v (%v)", st, err)
	}
	t.Logf("spare alarms %v, arbiter %+v", last.spare.Alarms, last.spare.Arbiter)
}

// (b) The main is cut from everything (its links stay up): it steps down
// when its lease runs out, before the spare is granted, and the spare is
// primary within lease + failover-time + 1 s; never two primaries.
func TestArbiterIsolatedMainStepsDown(t *testing.T) {
	p, _ := setupArbiter(t)
	w := watch(p)
	time.Sleep(200 * time.Millisecond)
	cut := time.Now()
	if err := p.Isolate(p.Main); err != nil {
		w.done()
		t.Fatal(err)
	}
	limit := arbLease + arbFailover + time.Second
	deadline := time.Now().Add(limit + 2*time.Second)
	for time.Now().Before(deadline) {
		if st, err := p.Status(p.Spare); err == nil && st.Role == "primary" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	samples := w.done()
	neverTwo(t, samples)
	down, ok := first(samples, cut, func(s sample) bool { return s.mRole != "primary" })
	if !ok {
		t.Fatal("the isolated main never stepped down")
	}
	granted, ok := first(samples, cut, func(s sample) bool { return s.spare.Arbiter != nil && s.spare.Arbiter.State == "granted" })
	if !ok {
		t.Fatal("the spare was never granted")
	}
	up, ok := first(samples, cut, func(s sample) bool { return s.sRole == "primary" })
	if !ok {
		t.Fatal("the spare never became primary")
	}
	t.Logf("after the cut: main stepped down %v, spare granted %v, spare primary %v (limit %v)",
		down.at.Sub(cut).Round(time.Millisecond), granted.at.Sub(cut).Round(time.Millisecond), up.at.Sub(cut).Round(time.Millisecond), limit)
	if !down.at.Before(granted.at) {
		t.Errorf("the spare was granted (%s) before the main stepped down (%s)", granted.at.Format("15:04:05.000"), down.at.Format("15:04:05.000"))
	}
	if took := up.at.Sub(cut); took > limit {
		t.Errorf("spare primary %v after the cut, want within lease + failover-time + 1s = %v", took, limit)
	}
	if p.HasAddress(p.Main) {
		t.Error("the isolated main still holds the service address")
	}
}

// (c) Power loss of the main with the arbiter present: the spare is
// granted once the main's lease has run out and takes over within
// failover-time + 1 s.
func TestArbiterPowerLossOfMain(t *testing.T) {
	p, _ := setupArbiter(t)
	w := watch(p)
	time.Sleep(200 * time.Millisecond)
	took := measurePowerLoss(t, p)
	samples := w.done()
	neverTwo(t, samples)
	limit := arbFailover + time.Second
	t.Logf("takeover %v after the main's power loss (limit failover-time + 1s = %v)", took, limit)
	if took > limit {
		t.Errorf("takeover took %v, want within failover-time + 1s = %v", took, limit)
	}
	st, _ := p.Status(p.Spare)
	if st.Arbiter == nil || st.Arbiter.State != "granted" || st.Arbiter.Holder != st.NodeID || !p.HasAddress(p.Spare) {
		t.Errorf("spare after the takeover: arbiter %+v, address %v", st.Arbiter, p.HasAddress(p.Spare))
	}
}

// (d) The arbiter goes down while the pair is healthy: only the alarm on
// the main (which holds the lease); no role changes.
func TestArbiterDownPairHealthy(t *testing.T) {
	p, a := setupArbiter(t)
	w := watch(p)
	p.Kill(a)
	time.Sleep(arbLease + 2*time.Second)
	samples := w.done()
	neverTwo(t, samples)
	for _, s := range samples {
		if s.mRole != "primary" || s.sRole != "secondary" {
			t.Fatalf("roles changed at %s: main %q spare %q", s.at.Format("15:04:05.000"), s.mRole, s.sRole)
		}
	}
	last := samples[len(samples)-1]
	if !slices.Contains(last.main.Alarms, "arbiter-unreachable") {
		t.Errorf("main alarms %v, want arbiter-unreachable", last.main.Alarms)
	}
	if last.main.Arbiter == nil || last.main.Arbiter.State != "unreachable" {
		t.Errorf("main's arbiter %+v", last.main.Arbiter)
	}
	if other := slices.DeleteFunc(slices.Clone(last.main.Alarms), func(a string) bool { return a == "arbiter-unreachable" }); len(other) > 0 {
		t.Errorf("alarms beyond arbiter-unreachable on the main: %v", other)
	}
	if len(last.spare.Alarms) > 0 {
		t.Errorf("spare alarms %v, want none", last.spare.Alarms)
	}
	if last.main.Epoch != 1 || last.spare.Epoch != 1 {
		t.Errorf("epochs %d %d", last.main.Epoch, last.spare.Epoch)
	}
	out, err := p.Run(p.Main, "status")
	if err != nil || !strings.Contains(out, "arbiter   unreachable") {
		t.Errorf("text status: %v\n%s", err, out)
	}
}
