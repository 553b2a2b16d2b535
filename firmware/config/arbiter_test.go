package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/arbiter"
	"github.com/pairguard/pairguard/firmware/engine"
)

func arbiterKey(pairKey string) string {
	return arbiter.FormatKey(arbiter.DeriveKey([]byte(pairKey)))
}

func TestArbiterNode(t *testing.T) {
	slow := strings.Replace(good, `interval = "20ms"`, `interval = "100ms"`, 1)
	c, err := Parse("node.toml", []byte(slow+"\n[arbiter]\naddress = \"192.168.1.5\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Arbiter.Address != "192.168.1.5:7405" {
		t.Errorf("address %q, want the default port", c.Arbiter.Address)
	}
	if a := c.Engine.Arbiter; !a.Enabled || a.ReleaseMargin != engine.DefaultReleaseMargin {
		t.Errorf("engine arbiter %+v", a)
	}
	if got, want := c.ArbiterLease(), c.Heartbeat.FailoverTime.Duration+arbiter.LeaseOverFailover; got != want {
		t.Errorf("lease %v, want %v", got, want)
	}
	c, err = Parse("node.toml", []byte(good+"\n[arbiter]\naddress = \"192.168.1.5\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Engine.Arbiter.ReleaseMargin; got != 50*time.Millisecond {
		t.Errorf("release margin %v with failover-time %v, want half of it", got, c.Heartbeat.FailoverTime)
	}
	c, err = Parse("node.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Engine.Arbiter.Enabled {
		t.Error("arbiter enabled without [arbiter] address")
	}
}

func TestArbiterMode(t *testing.T) {
	k1, k2 := arbiterKey("0123456789abcdef0123"), arbiterKey("another pair key, long")
	src := "mode = \"arbiter\"\nstate-dir = \"/var/lib/pgarb\"\n\n[[arbiter.pair]]\nkey = \"" + k1 + "\"\n\n[[arbiter.pair]]\nkey = \"" + k2 + "\"\n"
	c, err := Parse("arb.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsArbiter() || c.Arbiter.Listen != ":7405" || len(c.Arbiter.Keys) != 2 {
		t.Fatalf("arbiter config %+v", c.Arbiter)
	}
	if !bytes.Equal(c.Arbiter.Keys[0], arbiter.DeriveKey([]byte("0123456789abcdef0123"))) {
		t.Error("first key not the derived key of its pair")
	}
	// Pairs change live, the port does not.
	one, err := Parse("arb.toml", []byte(src[:strings.LastIndex(src, "[[arbiter.pair]]")]))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reloadable(one); err != nil {
		t.Errorf("removing a pair needs a restart: %v", err)
	}
	moved, _ := Parse("arb.toml", []byte(strings.Replace(src, "\n\n[[arbiter.pair]]", "\n[arbiter]\nlisten = \":7406\"\n\n[[arbiter.pair]]", 1)))
	if moved == nil || c.Reloadable(moved) == nil {
		t.Errorf("a new listen address applied live (%v)", moved)
	}
}

func TestArbiterErrors(t *testing.T) {
	k := arbiterKey("0123456789abcdef0123")
	node := "mode = \"main\"\npair-key = \"0123456789abcdef\"\n[lan1]\ninterface=\"a\"\n[lan2]\ninterface=\"b\"\n"
	tests := []struct {
		name, src, key string
		line           int
	}{
		{"bad address", node + "[arbiter]\naddress = \"h:port\"\n", "arbiter.address", 8},
		{"address without host", node + "[arbiter]\naddress = \":7405\"\n", "arbiter.address", 8},
		{"independent with arbiter", "mode = \"independent\"\n[arbiter]\naddress = \"10.0.0.1:7405\"\n", "arbiter.address", 3},
		{"listen on a node", node + "[arbiter]\nlisten = \":7405\"\n", "arbiter.listen", 8},
		{"pair on a node", node + "[[arbiter.pair]]\nkey = \"" + k + "\"\n", "arbiter.pair", 0},
		{"arbiter without pairs", "mode = \"arbiter\"\n", "arbiter", 0},
		{"bad key", "mode = \"arbiter\"\n[[arbiter.pair]]\nkey = \"0123\"\n", "arbiter.pair.0.key", 3},
		{"pair key instead of arbiter key", "mode = \"arbiter\"\n[[arbiter.pair]]\nkey = \"0123456789abcdef0123\"\n", "arbiter.pair.0.key", 3},
		{"same pair twice", "mode = \"arbiter\"\n[[arbiter.pair]]\nkey = \"" + k + "\"\n[[arbiter.pair]]\nkey = \"" + k + "\"\n", "arbiter.pair.1.key", 5},
		{"address on the arbiter", "mode = \"arbiter\"\n[arbiter]\naddress = \"10.0.0.1:1\"\n[[arbiter.pair]]\nkey = \"" + k + "\"\n", "arbiter.address", 3},
		{"bad listen", "mode = \"arbiter\"\n[arbiter]\nlisten = \"7405\"\n[[arbiter.pair]]\nkey = \"" + k + "\"\n", "arbiter.listen", 3},
		{"unknown key", "mode = \"arbiter\"\n[arbiter]\nlease = \"1s\"\n[[arbiter.pair]]\nkey = \"" + k + "\"\n", "arbiter.lease", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.key+":") {
				t.Fatalf("error %q does not name %q", err, tt.key)
			}
			var ce *Error
			if errors.As(err, &ce) && tt.line > 0 && ce.Line != tt.line {
				t.Errorf("error %q at line %d, want %d", err, ce.Line, tt.line)
			}
		})
	}
}
