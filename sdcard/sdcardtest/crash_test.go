package sdcardtest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
)

func TestRecorderCrash(t *testing.T) {
	r := NewRecorder()
	d := r.Device("d", make([]byte, 4096))
	s := r.Store()
	f, _ := s.OpenFile("j")
	ones := bytes.Repeat([]byte{1}, 1024)
	twos := bytes.Repeat([]byte{2}, 1024)
	d.WriteAt(ones, 0) // op 2 (op 1: the directory sync of OpenFile)
	d.Sync()           // op 3
	d.WriteAt(twos, 0) // op 4, never synced
	f.WriteAt(ones, 0) // op 5
	s.WriteFile("meta", []byte("new"))
	yes, no := true, false
	rng := rand.New(rand.NewPCG(1, 1))

	st := r.Crash(r.Ops(), rng, &no)
	if !bytes.Equal(st["dev:d"][:1024], ones) {
		t.Error("a synced write was lost")
	}
	if len(st["j"]) != 0 {
		t.Error("an unsynced file write survived although none should")
	}
	if string(st["meta"]) != "new" {
		t.Error("a completed WriteFile was lost")
	}
	st = r.Crash(r.Ops(), rng, &yes)
	if !bytes.Equal(st["dev:d"][:1024], twos) || !bytes.Equal(st["j"], ones) {
		t.Error("with every unsynced write kept, the live content is expected")
	}
	if st := r.Crash(2, rng, &no); !bytes.Equal(st["dev:d"][:1024], make([]byte, 1024)) {
		t.Error("an unsynced write survived a crash before its sync")
	}
	if _, ok := r.Crash(5, rng, &no)["meta"]; ok {
		t.Error("a file exists before its WriteFile")
	}
	// Random subsets tear writes sector by sector: some crash shows a mix.
	mixed := false
	for range 50 {
		b := r.Crash(r.Ops(), rng, nil)["dev:d"][:1024]
		if !bytes.Equal(b, ones) && !bytes.Equal(b, twos) {
			mixed = true
		}
	}
	if !mixed {
		t.Error("no torn write in 50 random crashes")
	}
	// A state becomes a new recorder.
	r2 := NewRecorderFrom(st)
	if b, err := r2.Store().ReadFile("meta"); err != nil || string(b) != "new" {
		t.Errorf("NewRecorderFrom: %q %v", b, err)
	}
	if _, err := r2.Store().ReadFile("none"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
