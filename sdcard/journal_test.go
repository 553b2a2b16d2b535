package sdcard

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// writeJournal journals three records for a 1 MiB device and returns the
// file's bytes and the image they produce.
func writeJournal(t *testing.T, dir string, commit bool) ([]byte, []byte) {
	t.Helper()
	g := Geometry{Size: 1 << 20, BlockSize: 65536}
	j, err := OpenJournal(DirStore(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Begin(9, g.Size); err == nil {
		t.Fatal("Begin on a journal not yet recovered truncated it")
	}
	if err := j.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := j.Begin(9, g.Size); err != nil {
		t.Fatal(err)
	}
	want := NewMemDevice(g.Size)
	recs := []dataMsg{
		{Block: 1, Sub: 2, Bytes: bytes.Repeat([]byte{1}, FineSize)},
		{Block: 3, Sub: wholeBlock, Bytes: bytes.Repeat([]byte{2}, 65536)},
		{Block: 15, Sub: 15, Bytes: bytes.Repeat([]byte{3}, FineSize)},
		{Block: 3, Sub: 1, Zero: true},
	}
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
		if err := applyRecord(want, g, r); err != nil {
			t.Fatal(err)
		}
	}
	if commit {
		if err := j.Commit(GenInfo{Current: 77, History: []uint64{66}, Data: DataUpToDate}); err != nil {
			t.Fatal(err)
		}
		if err := j.Begin(10, g.Size); err == nil {
			t.Fatal("Begin truncated a committed journal that was never applied")
		}
	} else if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	return b, want.Bytes()
}

func recoverFrom(t *testing.T, journal []byte) (*MemDevice, *GenInfo) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, JournalFile), journal, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(DirStore(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dev := NewMemDevice(1 << 20)
	gen, err := j.Recover(dev, Geometry{Size: 1 << 20, BlockSize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	return dev, gen
}

func TestJournalCommittedIsReplayed(t *testing.T) {
	b, want := writeJournal(t, t.TempDir(), true)
	dev, gen := recoverFrom(t, b)
	if gen == nil || gen.Current != 77 || gen.History[0] != 66 || gen.Data != DataUpToDate {
		t.Fatalf("generation %+v", gen)
	}
	if !bytes.Equal(dev.Bytes(), want) {
		t.Fatal("replayed image differs")
	}
	if dev.Syncs == 0 {
		t.Fatal("replay did not sync the device")
	}
}

func TestJournalUncommittedIsDropped(t *testing.T) {
	b, _ := writeJournal(t, t.TempDir(), false)
	dev, gen := recoverFrom(t, b)
	if gen != nil || !IsZero(dev.Bytes()) {
		t.Fatal("an uncommitted journal changed the device")
	}
}

// TestJournalTornOrCorrupt cuts the committed journal at every length and
// flips bytes: the device is either untouched or fully updated.
func TestJournalTornOrCorrupt(t *testing.T) {
	b, want := writeJournal(t, t.TempDir(), true)
	check := func(what string, j []byte) {
		dev, gen := recoverFrom(t, j)
		got := dev.Bytes()
		switch {
		case gen == nil && IsZero(got):
		case gen != nil && bytes.Equal(got, want):
		default:
			t.Fatalf("%s: a mix (generation %v)", what, gen)
		}
	}
	for n := 0; n < len(b); n += 97 {
		check("cut", b[:n])
	}
	check("cut", b[:len(b)-1])
	for i := 0; i < len(b); i += 131 {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		check("flip", c)
	}
}
