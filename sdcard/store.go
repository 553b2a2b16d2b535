package sdcard

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pairguard/pairguard/drivers/durable"
)

// Store is where the mirror keeps its metadata and its journal: the state
// directory, or in crash tests a recording fake that models a power cut.
type Store interface {
	// ReadFile returns a file's content; a missing file is os.ErrNotExist.
	ReadFile(name string) ([]byte, error)
	// WriteFile replaces a file durably: after a power cut it holds the old
	// or the new content, and the new one once WriteFile returned nil.
	WriteFile(name string, data []byte) error
	// OpenFile opens a file for reading and writing, creating it (and
	// making its directory entry durable) if it is missing.
	OpenFile(name string) (File, error)
}

// File is an open file of a Store. Writes are durable only after Sync.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// DirStore is a Store in a directory of the real file system.
type DirStore string

// ReadFile implements Store.
func (d DirStore) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

// WriteFile implements Store with write, fsync, rename, fsync of the directory.
func (d DirStore) WriteFile(name string, data []byte) error {
	if err := durable.WriteFile(filepath.Join(string(d), name), data, 0o600); err != nil {
		return fmt.Errorf("sdcard: %w", err)
	}
	return nil
}

// OpenFile implements Store.
func (d DirStore) OpenFile(name string) (File, error) {
	f, err := os.OpenFile(filepath.Join(string(d), name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sdcard: %w", err)
	}
	// The file's directory entry must be durable before anything relies on it.
	if err := durable.SyncDir(string(d)); err != nil {
		f.Close()
		return nil, fmt.Errorf("sdcard: %w", err)
	}
	return f, nil
}
