package sdcardtest

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
)

// A Recorder models a power cut, as CrashMonkey and ALICE do: it records
// every write, truncate, sync and atomic replace made to its devices and
// files, and Crash builds what storage holds after a cut at any point of
// that history: everything synced before it, plus any subset of the
// writes not yet synced (each cut into sectors that survive or not on
// their own: a write may be torn). A file replaced with WriteFile
// (write, fsync, rename, fsync of the directory) is old or new, never a
// mix, and new once WriteFile returned.
type Recorder struct {
	mu   sync.Mutex
	objs map[string]*object
	ops  []op
}

type opKind uint8

const (
	opWrite opKind = iota + 1
	opTruncate
	opSync
	opReplace
)

type op struct {
	obj  string
	kind opKind
	off  int64
	data []byte
}

type object struct {
	base   []byte // content when recording started
	exists bool   // at the start
	live   []byte
	here   bool // exists now
	device bool // fixed size
}

// NewRecorder returns an empty recorder: a device is added with Device,
// files with the store's WriteFile or OpenFile.
func NewRecorder() *Recorder { return &Recorder{objs: map[string]*object{}} }

// State is the content of every object, by name; devices are prefixed
// "dev:".
type State map[string][]byte

// NewRecorderFrom returns a recorder that starts from a crash state.
func NewRecorderFrom(s State) *Recorder {
	r := NewRecorder()
	for name, b := range s {
		r.objs[name] = &object{base: slices.Clone(b), exists: true, live: slices.Clone(b), here: true,
			device: len(name) > 4 && name[:4] == "dev:"}
	}
	return r
}

// Ops is the number of operations recorded: the crash points are 0..Ops().
func (r *Recorder) Ops() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// Synced reports whether the operation before point k is a sync or a
// replace (a point where something just became durable).
func (r *Recorder) Synced(k int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return k > 0 && k <= len(r.ops) && (r.ops[k-1].kind == opSync || r.ops[k-1].kind == opReplace)
}

func (r *Recorder) record(o op) {
	r.ops = append(r.ops, o)
}

func apply(b []byte, o op, device bool) []byte {
	switch o.kind {
	case opWrite:
		if end := o.off + int64(len(o.data)); end > int64(len(b)) && !device {
			b = append(b, make([]byte, end-int64(len(b)))...)
		}
		copy(b[o.off:], o.data)
	case opTruncate:
		if o.off < int64(len(b)) {
			b = b[:o.off]
		} else {
			b = append(b, make([]byte, o.off-int64(len(b)))...)
		}
	case opReplace:
		b = slices.Clone(o.data)
	}
	return b
}

// Crash returns what storage holds after a power cut once the first k
// operations were issued. rng picks which unsynced writes (sector by
// sector) and truncates survive; keep, if not nil, overrides it (true:
// all survive, false: none).
func (r *Recorder) Crash(k int, rng *rand.Rand, keep *bool) State {
	r.mu.Lock()
	defer r.mu.Unlock()
	type st struct {
		durable []byte
		exists  bool
		pending []op
	}
	sts := map[string]*st{}
	for name, o := range r.objs {
		sts[name] = &st{durable: slices.Clone(o.base), exists: o.exists}
	}
	for _, o := range r.ops[:k] {
		s := sts[o.obj]
		switch o.kind {
		case opSync:
			for _, p := range s.pending {
				s.durable = apply(s.durable, p, r.objs[o.obj].device)
			}
			s.pending = nil
			s.exists = true
		case opReplace:
			s.durable, s.exists, s.pending = slices.Clone(o.data), true, nil
		default:
			s.pending = append(s.pending, o)
		}
	}
	out := State{}
	for name, s := range sts {
		b := s.durable
		dev := r.objs[name].device
		for _, p := range s.pending {
			if p.kind == opTruncate {
				if survive(rng, keep) {
					b = apply(b, p, dev)
				}
				continue
			}
			// A write survives sector by sector.
			for off := 0; off < len(p.data); off += sector {
				if survive(rng, keep) {
					piece := op{kind: opWrite, off: p.off + int64(off), data: p.data[off:min(off+sector, len(p.data))]}
					b = apply(b, piece, dev)
				}
			}
			s.exists = true
		}
		if s.exists || len(b) > 0 {
			out[name] = slices.Clone(b)
		}
	}
	return out
}

func survive(rng *rand.Rand, keep *bool) bool {
	if keep != nil {
		return *keep
	}
	return rng.IntN(2) == 0
}

// Device returns a recorded block device of the given content (at most
// one per name).
func (r *Recorder) Device(name string, content []byte) *Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := "dev:" + name
	o, ok := r.objs[key]
	if !ok {
		o = &object{base: slices.Clone(content), exists: true, live: slices.Clone(content), here: true, device: true}
		r.objs[key] = o
	}
	return &Device{r: r, name: key}
}

// Device is a block device whose writes and syncs are recorded.
type Device struct {
	r    *Recorder
	name string
}

// ReadAt reads from the live content.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	o := d.r.objs[d.name]
	if err := checkAligned(off, len(p), int64(len(o.live))); err != nil {
		return 0, err
	}
	return copy(p, o.live[off:]), nil
}

// WriteAt records a write.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	o := d.r.objs[d.name]
	if err := checkAligned(off, len(p), int64(len(o.live))); err != nil {
		return 0, err
	}
	w := op{obj: d.name, kind: opWrite, off: off, data: slices.Clone(p)}
	o.live = apply(o.live, w, true)
	d.r.record(w)
	return len(p), nil
}

// Size is the device's size.
func (d *Device) Size() int64 {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	return int64(len(d.r.objs[d.name].live))
}

// Sync records a sync.
func (d *Device) Sync() error {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	d.r.record(op{obj: d.name, kind: opSync})
	return nil
}

// Close does nothing.
func (d *Device) Close() error { return nil }

// Bytes returns the live content.
func (d *Device) Bytes() []byte {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	return slices.Clone(d.r.objs[d.name].live)
}

// Store is a recorded state directory.
type Store struct{ r *Recorder }

// Store returns the recorder's state directory.
func (r *Recorder) Store() Store { return Store{r} }

// ReadFile returns a file's live content.
func (s Store) ReadFile(name string) ([]byte, error) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	o, ok := s.r.objs[name]
	if !ok || !o.here {
		return nil, fmt.Errorf("sdcardtest: %s: %w", name, os.ErrNotExist)
	}
	return slices.Clone(o.live), nil
}

// WriteFile replaces a file atomically and durably.
func (s Store) WriteFile(name string, data []byte) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	o, ok := s.r.objs[name]
	if !ok {
		o = &object{}
		s.r.objs[name] = o
	}
	o.live, o.here = slices.Clone(data), true
	s.r.record(op{obj: name, kind: opReplace, data: slices.Clone(data)})
	return nil
}

// OpenFile opens (creating, durably) a file.
func (s Store) OpenFile(name string) (*File, error) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	o, ok := s.r.objs[name]
	if !ok {
		o = &object{}
		s.r.objs[name] = o
	}
	if !o.here {
		o.here = true
		// The real store fsyncs the directory after creating the file.
		s.r.record(op{obj: name, kind: opSync})
	}
	return &File{r: s.r, name: name}, nil
}

// File is a recorded file.
type File struct {
	r    *Recorder
	name string
}

// ReadAt reads the live content.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	live := f.r.objs[f.name].live
	if off >= int64(len(live)) {
		return 0, io.EOF
	}
	n := copy(p, live[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt records a write.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	o := f.r.objs[f.name]
	w := op{obj: f.name, kind: opWrite, off: off, data: slices.Clone(p)}
	o.live = apply(o.live, w, false)
	f.r.record(w)
	return len(p), nil
}

// Truncate records a truncate.
func (f *File) Truncate(size int64) error {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	o := f.r.objs[f.name]
	t := op{obj: f.name, kind: opTruncate, off: size}
	o.live = apply(o.live, t, false)
	f.r.record(t)
	return nil
}

// Sync records a sync.
func (f *File) Sync() error {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	f.r.record(op{obj: f.name, kind: opSync})
	return nil
}

// Close does nothing.
func (f *File) Close() error { return nil }
