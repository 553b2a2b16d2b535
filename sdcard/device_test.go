package sdcard

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenDeviceRefusals(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDevice(filepath.Join(dir, "missing"), DefaultBlockSize); !errors.Is(err, ErrNoDevice) {
		t.Errorf("missing: %v, want ErrNoDevice", err)
	}
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDevice(small, DefaultBlockSize); !errors.Is(err, ErrTooSmall) {
		t.Errorf("small: %v, want ErrTooSmall", err)
	}
	if _, err := OpenDevice(small, 1000); !errors.Is(err, ErrBlockSize) {
		t.Errorf("block size 1000: %v, want ErrBlockSize", err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.WriteFile(ro, make([]byte, 1<<20), 0o400); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		t.Log("running as root: a 0400 file is writable, read-only check skipped")
	} else if _, err := OpenDevice(ro, DefaultBlockSize); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only: %v, want ErrReadOnly", err)
	}
}

func TestDeviceAlignedIO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	const size = 3*65536 + 1024 // a short last block
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDevice(path, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g := Geometry{Size: d.Size(), BlockSize: 65536}
	if g.Blocks() != 4 || g.Subs(3) != 1 {
		t.Fatalf("blocks %d, subs of last %d", g.Blocks(), g.Subs(3))
	}
	if off, n := g.Span(3); off != 3*65536 || n != 1024 {
		t.Fatalf("span of last block = %d, %d", off, n)
	}
	p := []byte("hello, sector")
	p = append(p, make([]byte, 512-len(p))...)
	if _, err := d.WriteAt(p, 512); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(p[:100], 512); !errors.Is(err, ErrUnaligned) {
		t.Errorf("short write: %v, want ErrUnaligned", err)
	}
	if _, err := d.WriteAt(p, 100); !errors.Is(err, ErrUnaligned) {
		t.Errorf("unaligned offset: %v, want ErrUnaligned", err)
	}
	if _, err := d.WriteAt(p, size); !errors.Is(err, ErrUnaligned) {
		t.Errorf("beyond the end: %v, want ErrUnaligned", err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	q := make([]byte, 512)
	if _, err := d.ReadAt(q, 512); err != nil || string(q[:13]) != "hello, sector" {
		t.Fatalf("read back %q, %v", q[:13], err)
	}
	// The last block may be read to the end of the device.
	if _, err := d.ReadAt(make([]byte, 1024), 3*65536); err != nil {
		t.Fatal(err)
	}
}
