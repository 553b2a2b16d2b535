// Package addrtest is an in-memory addr.Manager for the daemon's unit tests.
// It keeps a set of prefixes with the same idempotent semantics as the real
// driver, records every call in order and can be told to fail.
package addrtest

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/pairguard/pairguard/drivers/addr"
)

// Op names a Manager method.
type Op int

// The operations a Manager records. The zero Op is invalid.
const (
	OpInvalid Op = iota
	OpAdd
	OpRemove
	OpHas
)

// String returns the method name.
func (o Op) String() string {
	switch o {
	case OpAdd:
		return "Add"
	case OpRemove:
		return "Remove"
	case OpHas:
		return "Has"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Call is one recorded method call.
type Call struct {
	Op     Op
	Prefix netip.Prefix
	Err    error // what the call returned
}

// String formats the call as "Add(192.0.2.10/24)".
func (c Call) String() string { return fmt.Sprintf("%s(%s)", c.Op, c.Prefix) }

// Manager is a fake addr.Manager. The zero value is not usable; call New.
// It is safe for concurrent use.
type Manager struct {
	mu    sync.Mutex
	addrs map[netip.Prefix]bool
	calls []Call
	errs  map[Op]error
}

var _ addr.Manager = (*Manager)(nil)

// New returns a Manager whose interface already holds the given prefixes
// (for example one left behind by a previous run of the daemon).
func New(present ...netip.Prefix) *Manager {
	m := &Manager{addrs: map[netip.Prefix]bool{}, errs: map[Op]error{}}
	for _, p := range present {
		m.addrs[p] = true
	}
	return m
}

// SetErr makes every later call of op fail with err (nil restores success).
// A failing Add or Remove leaves the addresses unchanged.
func (m *Manager) SetErr(op Op, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs[op] = err
}

func (m *Manager) record(op Op, p netip.Prefix) error {
	err := m.errs[op]
	m.calls = append(m.calls, Call{Op: op, Prefix: p, Err: err})
	return err
}

// Add adds p; adding a present prefix is not an error.
func (m *Manager) Add(p netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.record(OpAdd, p); err != nil {
		return err
	}
	m.addrs[p] = true
	return nil
}

// Remove removes p; removing a missing prefix is not an error.
func (m *Manager) Remove(p netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.record(OpRemove, p); err != nil {
		return err
	}
	delete(m.addrs, p)
	return nil
}

// Has reports whether exactly p is present.
func (m *Manager) Has(p netip.Prefix) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.record(OpHas, p); err != nil {
		return false, err
	}
	return m.addrs[p], nil
}

// Calls returns a copy of the calls made so far, in order.
func (m *Manager) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// Addresses returns the prefixes currently present, sorted.
func (m *Manager) Addresses() []netip.Prefix {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]netip.Prefix, 0, len(m.addrs))
	for p := range m.addrs {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*256 + a.Bits() - b.Bits() })
	return out
}
