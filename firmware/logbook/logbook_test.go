package logbook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPersistAndBound(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
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
