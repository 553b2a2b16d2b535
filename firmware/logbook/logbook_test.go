package logbook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPersistAndBound(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	b.SetLimit(Limit{Burst: 100, Window: time.Minute})
	for i := range 35 {
		if err := b.Add(Entry{Kind: "test", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Last(3); len(got) != 3 || got[2].Message != "34" || got[0].Message != "32" {
		t.Fatalf("Last(3) = %v", got)
	}
	b.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "logbook.jsonl"))
	if n := strings.Count(string(data), "\n"); n >= 20 {
		t.Errorf("file holds %d lines, limit 10 allows fewer than 20", n)
	}
	// A torn line at the end (power cut while appending) is skipped.
	os.WriteFile(filepath.Join(dir, "logbook.jsonl"), append(data, []byte(`{"kind":"tor`)...), 0o600)
	b2, err := Open(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	all := b2.Last(0)
	if len(all) != 10 || all[9].Message != "34" || all[0].Message != "25" {
		t.Fatalf("reopened: %d entries, last %v", len(all), all[len(all)-1])
	}
	if !strings.Contains(all[0].String(), "test") {
		t.Errorf("String() = %q", all[0].String())
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.TempDir(), 0); err == nil {
		t.Error("zero limit accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "dir"), 5); err == nil {
		t.Error("missing dir accepted")
	}
}

// A flood of one kind from one source (failed TLS handshakes on the mirror
// port) keeps a few entries and a summary; the real entries before it
// survive. Before, 1500 entries wiped a 1000-entry logbook.
func TestFloodIsAggregated(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.now = func() time.Time { return now }
	for i := range 5 {
		b.Add(Entry{Kind: "takeover", Message: fmt.Sprint("real ", i)})
	}
	for range 1500 {
		now = now.Add(time.Millisecond)
		b.Add(Entry{Kind: "mirror", Source: "10.9.0.66", Message: "peer-rejected: tls: bad certificate"})
	}
	// Another source is limited on its own.
	b.Add(Entry{Kind: "mirror", Source: "10.9.0.2", Message: "split-brain-resolved"})
	all := b.Last(0)
	if len(all) > 5+DefaultLimit.Burst+1 {
		t.Fatalf("the flood kept %d entries", len(all))
	}
	for i := range 5 {
		if all[i].Message != fmt.Sprint("real ", i) {
			t.Fatalf("real entry %d lost: %v", i, all[i])
		}
	}
	if last := all[len(all)-1]; last.Source != "10.9.0.2" {
		t.Errorf("the other source's entry was held back: %v", last)
	}
	// When the window ends, one entry sums up what was held back.
	now = now.Add(DefaultLimit.Window)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	last := b.Last(1)[0]
	want := fmt.Sprintf("%d more", 1500-DefaultLimit.Burst)
	if last.Kind != "suppressed" || !strings.HasPrefix(last.Message, want) || last.Source != "10.9.0.66" {
		t.Errorf("summary %+v, want %q...", last, want)
	}
	b.Close()
}

// Entries are fsynced in batches by Flush, not one by one and not never.
func TestFlushSyncsInBatches(t *testing.T) {
	b, err := Open(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	syncs := 0
	b.sync = func(f *os.File) error { syncs++; return f.Sync() }
	for i := range 30 {
		b.Add(Entry{Kind: fmt.Sprint("k", i%3), Message: "x"})
	}
	if syncs != 0 {
		t.Errorf("%d syncs while adding", syncs)
	}
	b.Flush()
	b.Flush() // nothing new: no second sync
	if syncs != 1 {
		t.Errorf("%d syncs after two flushes, want 1", syncs)
	}
	var seen []Entry
	b.Watch(func(e Entry) { seen = append(seen, e) })
	b.Add(Entry{Kind: "w", Message: "watched"})
	if len(seen) != 1 || seen[0].Message != "watched" {
		t.Errorf("watcher saw %v", seen)
	}
	b.Close()
	if syncs != 2 {
		t.Errorf("%d syncs after close, want 2", syncs)
	}
}
