package arp

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is an Announcer that records when it is called, relative to start.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	at    []time.Duration
	ip    []netip.Addr
	err   error
}

func (r *recorder) Announce(ip netip.Addr, mac net.HardwareAddr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, time.Since(r.start))
	r.ip = append(r.ip, ip)
	return r.err
}

func (r *recorder) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at)
}

func TestGARPConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  GARPConfig
		want string // substring of the error; "" for valid
	}{
		{GARPConfig{Repeat: 1}, ""},
		{GARPConfig{Repeat: 3, Interval: time.Second, Refresh: time.Minute}, ""},
		{GARPConfig{Repeat: 0}, "garp.repeat"},
		{GARPConfig{Repeat: 2}, "garp.interval"},
		{GARPConfig{Repeat: 1, Refresh: -time.Second}, "garp.refresh"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v.Validate() = %v, want error containing %q", tt.cfg, err, tt.want)
		}
	}
	if _, err := NewGARP(&recorder{}, GARPConfig{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("NewGARP accepted an invalid config")
	}
}

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestGARPSchedule(t *testing.T) {
	tests := []struct {
		name string
		cfg  GARPConfig
		run  time.Duration
		want []time.Duration
	}{
		{"burst and refresh", GARPConfig{Repeat: 3, Interval: time.Second, Refresh: 10 * time.Second}, 35 * time.Second,
			ms(0, 1000, 2000, 12000, 22000, 32000)},
		{"burst only", GARPConfig{Repeat: 5, Interval: 200 * time.Millisecond}, time.Minute,
			ms(0, 200, 400, 600, 800)},
		{"one and refresh", GARPConfig{Repeat: 1, Refresh: 30 * time.Second}, 61 * time.Second,
			ms(0, 30000, 60000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &recorder{start: time.Now()}
				g, err := NewGARP(r, tt.cfg, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				g.Start(svc, otherMAC)
				time.Sleep(tt.run)
				synctest.Wait()
				g.Stop()
				if got := r.times(); !slices.Equal(got, tt.want) {
					t.Errorf("announcements at %v, want %v", got, tt.want)
				}
				// Nothing is sent after Stop.
				time.Sleep(time.Hour)
				synctest.Wait()
				if got := r.times(); len(got) != len(tt.want) {
					t.Errorf("%d announcements after Stop", len(got)-len(tt.want))
				}
				g.Stop() // stopping twice is harmless
			})
		})
	}
}

// StartNow sends the first announcement before it returns; the schedule
// goes on from the second, as Start's.
func TestGARPStartNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now()}
		g, err := NewGARP(r, GARPConfig{Repeat: 3, Interval: time.Second, Refresh: 10 * time.Second}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		g.StartNow(svc, otherMAC)
		if got := r.times(); !slices.Equal(got, ms(0)) {
			t.Fatalf("announcements when StartNow returned: %v, want the first", got)
		}
		time.Sleep(25 * time.Second)
		synctest.Wait()
		g.Stop()
		if got, want := r.times(), ms(0, 1000, 2000, 12000, 22000); !slices.Equal(got, want) {
			t.Errorf("announcements at %v, want %v", got, want)
		}
	})
}

func TestGARPRestartAndErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		r := &recorder{start: time.Now(), err: errors.New("link down")}
		g, err := NewGARP(r, GARPConfig{Repeat: 3, Interval: time.Second}, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		g.Start(svc, nil)
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		other := netip.MustParseAddr("192.0.2.11")
		g.Start(other, nil) // restarts the burst at 1.5 s for the new address
		time.Sleep(10 * time.Second)
		synctest.Wait()
		g.Stop()
		if got, want := r.times(), ms(0, 1000, 1500, 2500, 3500); !slices.Equal(got, want) {
			t.Errorf("announcements at %v, want %v", got, want)
		}
		if got := r.ip[2]; got != other {
			t.Errorf("third announcement for %s, want %s", got, other)
		}
		if n := strings.Count(logs.String(), "gratuitous ARP failed"); n != 5 {
			t.Errorf("%d failures logged, want 5:\n%s", n, logs.String())
		}
	})
}
