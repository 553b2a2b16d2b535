package sdcard

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	dir := t.TempDir()
	g := Geometry{Size: 100 << 20, BlockSize: 65536}
	m, err := LoadMeta(DirStore(dir), g)
	if err != nil {
		t.Fatal(err)
	}
	if m.Gen.Current != 0 || m.Gen.Data != DataInconsistent || m.NodeID == 0 {
		t.Fatalf("fresh meta %+v", m)
	}
	m.Epoch = 7
	for range 10 {
		if err := m.NewGeneration(); err != nil {
			t.Fatal(err)
		}
	}
	m.Dirty.Set(5)
	m.Dirty.Set(1599)
	m.BitmapValid = true
	m.SyncedGen = 42
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	n, err := LoadMeta(DirStore(dir), g)
	if err != nil {
		t.Fatal(err)
	}
	if n.NodeID != m.NodeID || n.Epoch != 7 || n.Gen.Current != m.Gen.Current ||
		!slices.Equal(n.Gen.History, m.Gen.History) || len(n.Gen.History) != MaxHistory ||
		n.Gen.Data != DataUpToDate || !n.BitmapValid || n.SyncedGen != 42 ||
		!slices.Equal(n.Dirty.List(), []uint64{5, 1599}) {
		t.Fatalf("loaded %+v, saved %+v", n, m)
	}
	// Another geometry keeps the generations and drops the bitmap.
	o, err := LoadMeta(DirStore(dir), Geometry{Size: 200 << 20, BlockSize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	if o.Gen.Current != m.Gen.Current || o.BitmapValid || o.Dirty.Count() != 0 || o.Dirty.Len() != 3200 {
		t.Fatalf("other geometry: %+v", o)
	}
}

func TestMetaCorruptionDetected(t *testing.T) {
	dir := t.TempDir()
	g := Geometry{Size: 1 << 20, BlockSize: 65536}
	m, _ := LoadMeta(DirStore(dir), g)
	m.NewGeneration()
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, MetaFile)
	b, _ := os.ReadFile(path)
	for _, i := range []int{0, 20, len(b) - 1} {
		c := slices.Clone(b)
		c[i] ^= 1
		os.WriteFile(path, c, 0o600)
		if _, err := LoadMeta(DirStore(dir), g); !errors.Is(err, ErrMetaCorrupt) {
			t.Errorf("flipped byte %d: %v, want ErrMetaCorrupt", i, err)
		}
	}
	os.WriteFile(path, b[:30], 0o600)
	if _, err := LoadMeta(DirStore(dir), g); !errors.Is(err, ErrMetaCorrupt) {
		t.Errorf("truncated: %v", err)
	}
	// A leftover temporary file from a crash does not matter.
	os.WriteFile(path, b, 0o600)
	os.WriteFile(path+".tmp", b[:10], 0o600)
	if n, err := LoadMeta(DirStore(dir), g); err != nil || n.Gen.Current != m.Gen.Current {
		t.Fatalf("with a torn temporary file: %v", err)
	}
}
