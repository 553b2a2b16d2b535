package daemon

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pairguard/pairguard/firmware/frame"
)

// stateDir holds the small files that must survive a restart: the node id,
// the epoch and the reserved epoch, the boot counter and the peer's replay marks. Every write is
// write-fsync-rename followed by an fsync of the directory, so a power cut
// leaves the old or the new value.
type stateDir string

// epochMu and reservedMu serialise the writers of the epoch file and of
// the reserved record: the loop (a claim's PersistEpoch) and the
// background writes. Apart, so that a claim never waits for a reservation.
var epochMu, reservedMu sync.Mutex

// raiseEpoch writes v as the epoch unless the file already holds more.
func (d stateDir) raiseEpoch(v uint64) error { return d.raise("epoch", &epochMu, v) }

// raiseReserved writes v to the reserved record ("epoch-reserved": the
// epoch a claim would take, written ahead of it; see the engine's package
// doc) unless it already holds more.
func (d stateDir) raiseReserved(v uint64) error { return d.raise(reservedFile, &reservedMu, v) }

const reservedFile = "epoch-reserved"

func (d stateDir) raise(name string, mu *sync.Mutex, v uint64) error {
	mu.Lock()
	defer mu.Unlock()
	cur, _, err := d.readUint(name)
	if err == nil && cur >= v {
		return nil
	}
	return d.writeUint(name, v)
}

func (d stateDir) path(name string) string { return filepath.Join(string(d), name) }

func (d stateDir) readUint(name string) (uint64, bool, error) {
	b, err := os.ReadFile(d.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("state: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
	if err != nil {
		return 0, false, fmt.Errorf("state: %s: %w", d.path(name), err)
	}
	return v, true, nil
}

func (d stateDir) write(name string, data []byte) error {
	tmp := d.path(name + ".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("state: %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, d.path(name)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	dir, err := os.Open(string(d))
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer dir.Close()
	return dir.Sync()
}

func (d stateDir) writeUint(name string, v uint64) error {
	return d.write(name, []byte(strconv.FormatUint(v, 10)+"\n"))
}

// nodeID returns the persisted node id, creating a random one at first start.
func (d stateDir) nodeID() (uint64, error) {
	v, ok, err := d.readUint("node-id")
	if err != nil || ok {
		return v, err
	}
	var b [8]byte
	for v == 0 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		v = binary.BigEndian.Uint64(b[:])
	}
	return v, d.write("node-id", []byte(fmt.Sprintf("%#x\n", v)))
}

// nextBoot increments and persists the boot counter: frames of an earlier
// boot can never be replayed as current ones.
func (d stateDir) nextBoot() (uint64, error) {
	v, _, err := d.readUint("boot-id")
	if err != nil {
		return 0, err
	}
	v++
	return v, d.writeUint("boot-id", v)
}

func (d stateDir) loadReplay(r *frame.Replay) error {
	b, err := os.ReadFile(d.path("replay.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	var marks []frame.Mark
	if err := json.Unmarshal(b, &marks); err != nil {
		return fmt.Errorf("state: replay.json: %w", err)
	}
	r.Restore(marks)
	return nil
}

// saveReplay persists the replay marks of the peers (not those of self,
// the node's own reflected frames).
func (d stateDir) saveReplay(r *frame.Replay, self uint64) error {
	marks := slices.DeleteFunc(r.Snapshot(), func(m frame.Mark) bool { return m.NodeID == self })
	b, err := json.Marshal(marks)
	if err != nil {
		return err
	}
	return d.write("replay.json", b)
}
