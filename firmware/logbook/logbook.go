// Package logbook is the appliance's persistent, bounded record of redundancy
// events: redundancy active or lost, peer up or down, takeovers with their
// reason, handovers, syncs, alarms and reloads.
//
// Entries are appended as JSON lines to one file in the state dir and fsynced
// in batches: Flush, which the daemon calls every second, syncs what was
// added since the last one. When the file holds twice the configured number
// of entries it is rewritten with the newest ones (write, fsync, rename), so
// it never grows without bound and a power cut leaves the old or the new file.
//
// A flood cannot wipe the record: per kind and source, at most Limit.Burst
// entries are kept per Limit.Window; the rest are counted and summed up in
// one "suppressed" entry when the window ends (at the next Flush or Add).
// A thousand failed TLS handshakes a second thus cost a few entries a minute.
package logbook

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Entry is one logbook line.
type Entry struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Role    string    `json:"role,omitempty"`
	Epoch   uint64    `json:"epoch,omitempty"`
	Message string    `json:"message"`
	// Source is where the event came from (a peer's address), when known;
	// the flood limit counts per kind and source.
	Source string `json:"source,omitempty"`
}

// Limit bounds how many entries of one kind and source are kept.
type Limit struct {
	Burst  int           // entries kept per window
	Window time.Duration // the window
}

// DefaultLimit keeps 20 entries of a kind and source a minute.
var DefaultLimit = Limit{Burst: 20, Window: time.Minute}

// maxKeys bounds the kinds and sources tracked at once; beyond it, entries
// of new sources share one count per kind.
const maxKeys = 256

// window is the flood limit's state of one kind and source.
type window struct {
	start      time.Time
	kept       int
	suppressed int
	last       Entry // the last suppressed entry
}

// String formats an entry for a terminal line.
func (e Entry) String() string {
	return fmt.Sprintf("%s %-17s %s", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Kind, e.Message)
}

// Book is a persistent logbook. It is safe for concurrent use.
type Book struct {
	mu      sync.Mutex
	path    string
	limit   int
	entries []Entry // the newest limit entries, oldest first
	lines   int     // lines in the file
	f       *os.File
	dirty   bool // written since the last sync

	flood   Limit
	windows map[string]*window
	watch   func(Entry)

	now  func() time.Time     // the clock (tests set it)
	sync func(*os.File) error // fsync (tests count it)
}

// Open opens (or creates) the logbook file in dir, keeping limit entries.
// A torn last line (a power cut while appending) is skipped.
func Open(dir string, limit int) (*Book, error) {
	if limit < 1 {
		return nil, errors.New("logbook: limit must be positive")
	}
	b := &Book{path: filepath.Join(dir, "logbook.jsonl"), limit: limit, flood: DefaultLimit,
		windows: map[string]*window{}, now: time.Now, sync: (*os.File).Sync}
	if f, err := os.Open(b.path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e Entry
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			b.lines++
			b.push(e)
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("logbook: %w", err)
	}
	f, err := os.OpenFile(b.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("logbook: %w", err)
	}
	b.f = f
	return b, nil
}

func (b *Book) push(e Entry) {
	b.entries = append(b.entries, e)
	if len(b.entries) > b.limit {
		b.entries = b.entries[len(b.entries)-b.limit:]
	}
}

// SetLimit changes the flood limit (DefaultLimit until then).
func (b *Book) SetLimit(l Limit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flood = l
}

// Watch makes fn see every entry kept, summaries included, after it is
// written (one watcher; nil removes it). fn must not block.
func (b *Book) Watch(fn func(Entry)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watch = fn
}

// Add appends an entry, unless the flood limit of its kind and source
// holds it back (counted for the summary; not an error). Its time is set
// when zero.
func (b *Book) Add(e Entry) error {
	b.mu.Lock()
	now := b.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	key := e.Kind + "\x00" + e.Source
	w := b.windows[key]
	if w == nil && len(b.windows) >= maxKeys {
		key = e.Kind + "\x00*"
		w = b.windows[key]
	}
	var out []Entry
	if w != nil && now.Sub(w.start) >= b.flood.Window {
		if s, ok := w.summary(b.flood.Window, now); ok {
			out = append(out, s)
		}
		w = nil
	}
	if w == nil {
		w = &window{start: now}
		b.windows[key] = w
	}
	if w.kept >= b.flood.Burst {
		w.suppressed++
		w.last = e
		b.mu.Unlock()
		return nil
	}
	w.kept++
	out = append(out, e)
	err := b.write(out)
	watch := b.watch
	b.mu.Unlock()
	if watch != nil {
		for _, e := range out {
			watch(e)
		}
	}
	return err
}

// summary is the entry that sums up what a window held back.
func (w *window) summary(span time.Duration, now time.Time) (Entry, bool) {
	if w.suppressed == 0 {
		return Entry{}, false
	}
	span = min(span, now.Sub(w.start)).Round(time.Second)
	msg := fmt.Sprintf("%d more %q entries held back in %v (flood limit); the last: %s",
		w.suppressed, w.last.Kind, span, w.last.Message)
	return Entry{Time: now, Kind: "suppressed", Role: w.last.Role, Epoch: w.last.Epoch, Source: w.last.Source, Message: msg}, true
}

// write appends entries to the file and the memory; b.mu is held.
func (b *Book) write(entries []Entry) error {
	var errs []error
	for _, e := range entries {
		line, err := json.Marshal(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("logbook: %w", err))
			continue
		}
		b.push(e)
		if b.f == nil {
			errs = append(errs, errors.New("logbook: closed"))
			continue
		}
		if _, err := b.f.Write(append(line, '\n')); err != nil {
			errs = append(errs, fmt.Errorf("logbook: %w", err))
			continue
		}
		b.dirty = true
		b.lines++
		if b.lines >= 2*b.limit {
			errs = append(errs, b.compact())
		}
	}
	return errors.Join(errs...)
}

// Flush writes the summaries of the flood windows that have ended and
// syncs the file if anything was written since the last sync. The daemon
// calls it every second, off its loop: the logbook's fsyncs come in
// batches, and Add does not wait for them.
func (b *Book) Flush() error {
	b.mu.Lock()
	now := b.now()
	var out []Entry
	for key, w := range b.windows {
		if now.Sub(w.start) < b.flood.Window {
			continue
		}
		if s, ok := w.summary(b.flood.Window, now); ok {
			out = append(out, s)
		}
		delete(b.windows, key)
	}
	err := b.write(out)
	f := b.f
	dirty := b.dirty && f != nil
	b.dirty = false
	watch := b.watch
	b.mu.Unlock()
	if watch != nil {
		for _, e := range out {
			watch(e)
		}
	}
	// The fsync runs without the lock: Add never waits for the disk. A
	// compaction or Close in between syncs and closes the file itself.
	if dirty {
		if serr := b.sync(f); serr != nil && !errors.Is(serr, os.ErrClosed) {
			err = errors.Join(err, fmt.Errorf("logbook: %w", serr))
		}
	}
	return err
}

// compact rewrites the file with the kept entries.
func (b *Book) compact() error {
	tmp := b.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("logbook: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, e := range b.entries {
		line, _ := json.Marshal(e)
		w.Write(append(line, '\n'))
	}
	err = errors.Join(w.Flush(), f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, b.path)
	}
	if err != nil {
		return fmt.Errorf("logbook: compact: %w", err)
	}
	b.f.Close()
	b.f, err = os.OpenFile(b.path, os.O_WRONLY|os.O_APPEND, 0o600)
	b.lines = len(b.entries)
	b.dirty = false
	if err != nil {
		b.f = nil
		return fmt.Errorf("logbook: %w", err)
	}
	return nil
}

// Last returns the newest n entries, oldest first (all when n <= 0).
func (b *Book) Last(n int) []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n <= 0 || n > len(b.entries) {
		n = len(b.entries)
	}
	return append([]Entry(nil), b.entries[len(b.entries)-n:]...)
}

// Close syncs and closes the file.
func (b *Book) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return nil
	}
	var out []Entry
	for _, w := range b.windows {
		if s, ok := w.summary(b.flood.Window, b.now()); ok {
			out = append(out, s)
		}
	}
	clear(b.windows)
	err := errors.Join(b.write(out), b.sync(b.f), b.f.Close())
	b.f = nil
	return err
}
