package sdcard

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
)

// blindStore is a DirStore whose journal reads back zeroes while blind is
// set: a card that acknowledged the journal's writes and fsync but returns
// something else when the round is applied.
type blindStore struct {
	DirStore
	blind *atomic.Bool
}

func (s blindStore) OpenFile(name string) (File, error) {
	f, err := s.DirStore.OpenFile(name)
	if err != nil || name != JournalFile {
		return f, err
	}
	return blindFile{File: f, blind: s.blind}, nil
}

type blindFile struct {
	File
	blind *atomic.Bool
}

func (f blindFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if f.blind.Load() {
		clear(p[:n])
	}
	return n, err
}

// A journal that does not read back the round just committed applied
// nothing of it: the receiver must not save the new generation as
// up-to-date over the old data (it did: Apply found no commit record,
// wrote nothing and returned no error). It stays inconsistent with the
// journal kept, and recovers once the journal reads back.
func TestJournalNotReadBackIsNotUpToDate(t *testing.T) {
	var blind atomic.Bool
	a, b := pair(t, 2<<20, func(c *MirrorConfig) {
		if c.Dev.Size() == 2<<20 && c.StateDir != "" {
			c.Store = blindStore{DirStore: DirStore(c.StateDir), blind: &blind}
		}
	})
	waitInSync(t, a, b)
	for i := range 8 {
		a.dev.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*65536*2)
	}
	blind.Store(true)
	_, err := a.m.SyncNow(context.Background())
	sa, sb := a.m.Status(), b.m.Status()
	if sb.Data == DataUpToDate && sb.Generation == sa.Generation && !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatalf("the receiver claims generation %x up-to-date without its data (round error %v)", sb.Generation, err)
	}
	if err == nil {
		t.Fatal("a round whose journal did not read back succeeded")
	}
	if sb.Data != DataInconsistent {
		t.Fatalf("receiver %v, want inconsistent", sb.Data)
	}
	blind.Store(false)
	waitFor(t, "the receiver recovers", func() bool {
		a.m.SyncNow(context.Background())
		return b.m.Status().Data == DataUpToDate && bytes.Equal(a.dev.Bytes(), b.dev.Bytes())
	})
}
