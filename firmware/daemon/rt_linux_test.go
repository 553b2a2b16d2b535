package daemon

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/firmware/config"
)

func TestRealtime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SCHED_FIFO needs root (CAP_SYS_NICE)")
	}
	nice := 5
	cfg := &config.Config{Nice: &nice}
	cfg.Heartbeat.RTPriority = 7
	d := &Daemon{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() {
		undo := d.realtime("test")
		tid := unix.Gettid()
		pol, prio, err := schedPolicy(tid)
		if err == nil && (pol != unix.SCHED_FIFO || prio != 7) {
			t.Errorf("while real-time: policy %d priority %d, want SCHED_FIFO 7", pol, prio)
		}
		undo()
		a, err2 := unix.SchedGetAttr(tid, 0)
		if err2 == nil && (a.Policy != 0 || a.Nice != 5) {
			t.Errorf("after undo: policy %d nice %d, want SCHED_OTHER at nice 5", a.Policy, a.Nice)
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Off: the thread keeps its scheduling.
	cfg.Heartbeat.RTPriority = 0
	go func() {
		d.realtime("off")()
		pol, _, err := schedPolicy(unix.Gettid())
		if err == nil && pol != 0 {
			t.Errorf("rt-priority 0 changed the policy to %d", pol)
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
