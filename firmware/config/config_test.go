package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/firmware/engine"
)

const good = `
mode = "spare"
node-name = "spare-1"
state-dir = "/var/lib/pairguard"
pair-key = "0123456789abcdef0123"
recovery = "automatic"

[lan1]
interface = "eth0"
service-address = "192.168.1.10/24"
witness = "192.168.1.1"

[lan2]
interface = "eth1"
address = "10.9.0.2/24"
peer-address = "10.9.0.1"

[heartbeat]
interval = "20ms"
missed = 5

[[check]]
command = "true"
`

func TestParseGood(t *testing.T) {
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Engine
	if e.Mode != engine.ModeSpare || e.Preferred || e.Recovery != engine.RecoveryAutomatic || !e.Witness {
		t.Errorf("engine config %+v", e)
	}
	if e.Interval != 20*time.Millisecond || e.FailoverTime != 100*time.Millisecond || e.LAN1Interval != 40*time.Millisecond {
		t.Errorf("timers %+v", e.Durations)
	}
	if e.ProbeTimeout != 20*time.Millisecond {
		t.Errorf("probe time %v, want a fifth of failover-time", e.ProbeTimeout)
	}
	if c.LAN1.Prefix.String() != "192.168.1.10/24" || c.LAN2.Peer.String() != "10.9.0.1" {
		t.Errorf("addresses %v %v", c.LAN1.Prefix, c.LAN2.Peer)
	}
	if c.Checks[0].Fall != 3 || c.Checks[0].Rise != 2 || c.GARP.Refresh.Duration != 30*time.Second {
		t.Errorf("defaults not applied: %+v %+v", c.Checks[0], c.GARP)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("min.toml", []byte(`mode = "independent"`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Heartbeat.Interval.Duration != 100*time.Millisecond || c.Heartbeat.FailoverTime.Duration != 500*time.Millisecond ||
		c.Control.Socket != DefaultSocket || c.StateDir != DefaultStateDir || c.Recovery != "manual" || c.OnLineLoss != "probe" {
		t.Errorf("defaults %+v", c)
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name, src, key string
		line           int
	}{
		{"bad mode", "mode = \"master\"\n", "mode", 1},
		{"bad duration", "mode = \"main\"\n[heartbeat]\ninterval = 100\n", "heartbeat.interval", 3},
		{"duration text", "mode = \"main\"\n[heartbeat]\ninterval = \"fast\"\n", "heartbeat.interval", 3},
		{"unknown key", "mode = \"independent\"\n\n[lan1]\ninterfase = \"eth0\"\n", "lan1.interfase", 4},
		{"failover short", "mode = \"independent\"\n[heartbeat]\ninterval = \"100ms\"\nfailover-time = \"150ms\"\n", "heartbeat.failover-time", 4},
		{"lan1 slow", "mode = \"independent\"\n[heartbeat]\nlan1-interval = \"400ms\"\n", "heartbeat.lan1-interval", 3},
		{"short key", "mode = \"main\"\npair-key = \"short\"\n[lan1]\ninterface=\"a\"\n[lan2]\ninterface=\"b\"\n", "pair-key", 2},
		{"missing lan2", "mode = \"main\"\npair-key = \"0123456789abcdef\"\n[lan1]\ninterface=\"a\"\n", "lan2.interface", 0},
		{"same iface", "mode = \"main\"\npair-key = \"0123456789abcdef\"\n[lan1]\ninterface=\"a\"\n[lan2]\ninterface=\"a\"\n", "lan2.interface", 6},
		{"bad service", "mode = \"independent\"\n[lan1]\nservice-address = \"fe80::1\"\n", "lan1.service-address", 3},
		{"bad block size", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\nblock-size = 1000\n", "datastore.block-size", 4},
		{"check without command", "mode = \"independent\"\n[[check]]\ninterval = \"1s\"\n", "check.0.command", 0},
		{"syntax", "mode = \"main\n", "mode", 1},
		{"relative state dir", "state-dir = \"var\"\n", "state-dir", 1},
		{"bandwidth", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\nbandwidth = \"fast\"\n", "datastore.bandwidth", 4},
		{"online without export", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\nmode = \"online\"\n", "datastore.mode: online needs nbd-socket", 4},
		{"nbd-socket periodic", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\nnbd-socket = \"/run/x\"\n", "datastore.nbd-socket", 4},
		{"split-brain", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\nsplit-brain = \"keep-primary\"\n", "datastore.split-brain", 4},
		{"compression", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\ncompression = \"gzip\"\n", "datastore.compression", 4},
		{"on-congestion", "mode = \"independent\"\n[datastore]\ndevice = \"/x\"\non-congestion = \"drop\"\n", "datastore.on-congestion", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("error %q does not name %q", err, tt.key)
			}
			var ce *Error
			if errors.As(err, &ce) && tt.line > 0 && ce.Line != tt.line {
				t.Errorf("error %q at line %d, want %d", err, ce.Line, tt.line)
			}
		})
	}
}

func TestPairKeyFile(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "key")
	os.WriteFile(kf, []byte("a-very-long-pair-secret\n"), 0o600)
	src := "mode = \"main\"\npair-key-file = \"" + kf + "\"\n[lan1]\ninterface=\"a\"\n[lan2]\ninterface=\"b\"\n"
	c, err := Parse("f.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Key) != "a-very-long-pair-secret" {
		t.Errorf("key %q", c.Key)
	}
	_, err = Parse("f.toml", []byte(strings.Replace(src, kf, kf+".missing", 1)))
	if err == nil || !strings.Contains(err.Error(), "pair-key-file") {
		t.Errorf("missing key file: %v", err)
	}
}

func TestReloadable(t *testing.T) {
	a, _ := Parse("a", []byte(good))
	b, _ := Parse("b", []byte(strings.Replace(good, `interval = "20ms"`, `interval = "30ms"`, 1)))
	if err := a.Reloadable(b); err != nil {
		t.Errorf("timer change needs restart: %v", err)
	}
	c, _ := Parse("c", []byte(strings.Replace(good, `"eth0"`, `"eth5"`, 1)))
	if err := a.Reloadable(c); err == nil || !strings.Contains(err.Error(), "lan1.interface") {
		t.Errorf("interface change: %v", err)
	}
}

func TestBandwidth(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "800K": 800_000, "50M": 50_000_000, "1G": 1e9, "123": 123} {
		if got, err := ParseBandwidth(in); err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v", in, got, err)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.toml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// Periods that run a command or a loop have minimums, and the block size
// has the mirror's limit; before, "1ns" and 16 MiB passed.
func TestMinimums(t *testing.T) {
	base := "mode = \"independent\"\nstate-dir = \"/tmp/x\"\n"
	tests := []struct{ src, key, want string }{
		{"[lan1]\nwitness-interval = \"1ns\"\n", "lan1.witness-interval", "minimum of 100ms"},
		{"[garp]\nrefresh = \"1ns\"\n", "garp.refresh", "minimum of 1s"},
		{"[garp]\ninterval = \"1ns\"\n", "garp.interval", "minimum of 10ms"},
		{"[[check]]\ncommand = \"true\"\ninterval = \"1ns\"\n", "check.0.interval", "minimum of 100ms"},
		{"[hooks]\ntimeout = \"1ns\"\n", "hooks.timeout", "minimum of 100ms"},
		{"[datastore]\ndevice = \"/dev/x\"\ninterval = \"1ns\"\n", "datastore.interval", "minimum of 100ms"},
		{"[datastore]\ndevice = \"/dev/x\"\nblock-size = 2097152\n", "datastore.block-size", "1 MiB"},
		{"standby = \"hot\"\n", "standby", "cold or warm"},
		{"[[check]]\nname = \"a\"\ncommand = \"true\"\n[[check]]\nname = \"a\"\ncommand = \"true\"\n", "check.1.name", "two checks"},
	}
	for _, tt := range tests {
		_, err := Parse("min.toml", []byte(base+tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %s ... %s", tt.src, err, tt.key, tt.want)
		}
	}
	c, err := Parse("ok.toml", []byte(base+"standby = \"warm\"\n[garp]\nrefresh = \"0s\"\n[datastore]\ndevice = \"/dev/x\"\nblock-size = 1048576\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Standby != "warm" || c.GARP.Refresh.Duration != 0 {
		t.Errorf("standby %q refresh %v", c.Standby, c.GARP.Refresh)
	}
	if c, _ := Parse("def.toml", []byte(base)); c.Standby != "cold" {
		t.Errorf("default standby %q", c.Standby)
	}
}

func TestOnlineAccepted(t *testing.T) {
	c, err := Parse("f.toml", []byte("mode = \"independent\"\n[datastore]\ndevice = \"/x\"\nmode = \"online\"\nnbd-socket = \"/run/pairguard/nbd.sock\"\nnbd-device = \"/dev/nbd0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Datastore.NBDSocket != "/run/pairguard/nbd.sock" || c.Datastore.NBDDevice != "/dev/nbd0" || c.Datastore.Replication != "sync" {
		t.Fatalf("datastore %+v", c.Datastore)
	}
}

func TestDatastoreCompression(t *testing.T) {
	for src, want := range map[string]string{
		"mode = \"independent\"\n[datastore]\ndevice = \"/x\"\n":                         "off",
		"mode = \"independent\"\n[datastore]\ndevice = \"/x\"\ncompression = \"zstd\"\n": "zstd",
		"mode = \"independent\"\n[datastore]\ndevice = \"/x\"\ncompression = \"off\"\n":  "off",
	} {
		c, err := Parse("f.toml", []byte(src))
		if err != nil || c.Datastore.Compression != want {
			t.Errorf("%q: compression %v, %v; want %s", src, c.Datastore, err, want)
		}
	}
}
