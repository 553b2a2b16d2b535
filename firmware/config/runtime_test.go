package config

import (
	"strings"
	"testing"
)

func TestRuntimeKeys(t *testing.T) {
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Heartbeat.RTPriority != 0 || c.Heartbeat.LockMemory || c.MemoryLimit != DefaultMemoryLimit || c.MemoryLimitBytes() != 16<<20 {
		t.Errorf("defaults: rt %d lock %v limit %q (%d)", c.Heartbeat.RTPriority, c.Heartbeat.LockMemory, c.MemoryLimit, c.MemoryLimitBytes())
	}
	set := strings.Replace(good, "[heartbeat]\n", "[heartbeat]\nrt-priority = 10\nlock-memory = true\n", 1)
	set = "memory-limit = \"0\"\n" + set
	c2, err := Parse("set.toml", []byte(set))
	if err != nil {
		t.Fatal(err)
	}
	if c2.Heartbeat.RTPriority != 10 || !c2.Heartbeat.LockMemory || c2.MemoryLimitBytes() != 0 {
		t.Errorf("set: rt %d lock %v limit %d", c2.Heartbeat.RTPriority, c2.Heartbeat.LockMemory, c2.MemoryLimitBytes())
	}
	if err := c.Reloadable(c2); err == nil || !strings.Contains(err.Error(), "heartbeat.rt-priority") || !strings.Contains(err.Error(), "memory-limit") {
		t.Errorf("reload of the runtime keys: %v, want them refused", err)
	}
	for key, bad := range map[string]string{
		"heartbeat.rt-priority": strings.Replace(good, "[heartbeat]\n", "[heartbeat]\nrt-priority = 100\n", 1),
		"memory-limit":          "memory-limit = \"12MB\"\n" + good,
	} {
		if _, err := Parse("bad.toml", []byte(bad)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v, want one naming the key", key, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "512KiB": 512 << 10, "12MiB": 12 << 20, "1GiB": 1 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12MB", "-1", "MiB", "1.5MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
