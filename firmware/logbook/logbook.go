// Package logbook is the appliance's persistent, bounded record of redundancy
// events: redundancy active or lost, peer up or down, takeovers with their
// reason, handovers, syncs, alarms and reloads.
//
// Entries are appended as JSON lines to one file in the state dir and fsynced
// in batches by the writer. When the file holds twice the configured number
// of entries it is rewritten with the newest ones (write, fsync, rename), so
// it never grows without bound and a power cut leaves the old or the new file.
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
}

// Open opens (or creates) the logbook file in dir, keeping limit entries.
// A torn last line (a power cut while appending) is skipped.
func Open(dir string, limit int) (*Book, error) {
	if limit < 1 {
		return nil, errors.New("logbook: limit must be positive")
	}
	b := &Book{path: filepath.Join(dir, "logbook.jsonl"), limit: limit}
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

// Add appends an entry. Its time is set when zero.
func (b *Book) Add(e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("logbook: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.push(e)
	if b.f == nil {
		return errors.New("logbook: closed")
	}
	if _, err := b.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("logbook: %w", err)
	}
	b.lines++
	if b.lines >= 2*b.limit {
		return b.compact()
	}
	return nil
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
	if err != nil {
		b.f = nil
		return fmt.Errorf("logbook: %w", err)
	}
	return nil
}

// Sync flushes the file to stable storage.
func (b *Book) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return nil
	}
	return b.f.Sync()
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
	err := errors.Join(b.f.Sync(), b.f.Close())
	b.f = nil
	return err
}
