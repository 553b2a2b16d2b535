package arbiter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// StateFile is the name of the arbiter's state in its state dir.
const StateFile = "arbiter.json"

// ServerConfig configures a Server.
type ServerConfig struct {
	Config
	// StateDir holds StateFile (the holders, epochs and counter
	// reservations). It must exist.
	StateDir string
	// Keys are the arbiter keys of the pairs served (DeriveKey of each
	// pair key; `[[arbiter.pair]] key`).
	Keys [][]byte
	// Logger receives the grants to new holders and the refused datagrams
	// (nil: discard).
	Logger *slog.Logger
}

// Server is the arbiter's UDP service: one port, many pairs.
type Server struct {
	conn  *net.UDPConn
	base  time.Time // the monotonic base of the core's clock
	path  string
	log   *slog.Logger
	close sync.Once

	mu   sync.Mutex
	core *Core
	keys map[uint32]*Key

	dropped atomic.Uint64 // datagrams refused (length, key, authenticator, counter...)
}

// Listen opens the arbiter's UDP port (addr such as ":7405") and loads its
// state; Serve answers requests. An unreadable state file is not fatal:
// the arbiter then behaves as after a loss of its state (it grants nothing
// for one lease), which is safe, and says so in the log.
func Listen(addr string, cfg ServerConfig) (*Server, error) {
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, err := keyMap(cfg.Keys)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.StateDir, StateFile)
	st, err := loadState(path)
	if err != nil {
		log.Warn("arbiter state unreadable: starting without it, nothing is granted for one lease", "err", err)
		st = nil
	}
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("arbiter: listen %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", uaddr)
	if err != nil {
		return nil, fmt.Errorf("arbiter: listen: %w", err)
	}
	s := &Server{conn: conn, base: time.Now(), path: path, log: log, keys: keys}
	s.core, err = New(cfg.Config, 0, st)
	if err != nil {
		conn.Close()
		return nil, err
	}
	for id := range keys {
		s.core.AddPair(id)
	}
	for _, ps := range s.core.State().Pairs {
		if _, ok := keys[ps.Pair]; !ok {
			s.core.RemovePair(ps.Pair)
		}
	}
	log.Info("arbiter listening", "addr", conn.LocalAddr().String(), "pairs", len(keys),
		"wait", cfg.MaxLease+cfg.Margin)
	return s, nil
}

func keyMap(keys [][]byte) (map[uint32]*Key, error) {
	m := map[uint32]*Key{}
	for i, k := range keys {
		if len(k) < 16 {
			return nil, fmt.Errorf("arbiter.pair[%d].key: too short (%d bytes)", i, len(k))
		}
		key := NewKey(k)
		if _, dup := m[key.PairID()]; dup {
			return nil, fmt.Errorf("arbiter.pair[%d].key: pair id %08x listed twice", i, key.PairID())
		}
		m[key.PairID()] = key
	}
	return m, nil
}

// SetKeys replaces the pairs served (a reload). A new pair waits one lease
// before anything is granted in it; a pair no longer listed is forgotten.
func (s *Server) SetKeys(keys [][]byte) error {
	m, err := keyMap(keys)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.core.advance(s.now())
	for id := range s.keys {
		if _, ok := m[id]; !ok {
			s.core.RemovePair(id)
		}
	}
	for id := range m {
		s.core.AddPair(id)
	}
	s.keys = m
	return nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

func (s *Server) now() time.Duration { return time.Since(s.base) }

// Serve answers requests until ctx is done or Close is called.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	buf := make([]byte, 2048)
	out := make([]byte, 0, ReplyLen)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("arbiter: read: %w", err)
		}
		rep, ok := s.handle(buf[:n], from.String())
		if !ok {
			continue
		}
		out, err = rep.reply.Append(out[:0], rep.key)
		if err != nil {
			s.log.Error("arbiter: cannot encode a reply", "err", err)
			continue
		}
		if _, err := s.conn.WriteToUDPAddrPort(out, from); err != nil {
			s.log.Warn("arbiter: reply not sent", "to", from.String(), "err", err)
		}
	}
}

type answer struct {
	reply Reply
	key   *Key
}

// handle checks and decides one datagram. It reports false when nothing
// is to be sent.
func (s *Server) handle(b []byte, from string) (answer, bool) {
	pair, err := RequestPair(b)
	if err != nil {
		s.dropped.Add(1)
		return answer{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := s.keys[pair]
	if key == nil {
		s.dropped.Add(1)
		s.log.Debug("arbiter: request for a pair not served", "pair", fmt.Sprintf("%08x", pair), "from", from)
		return answer{}, false
	}
	var req Request
	if err := DecodeRequest(b, key, &req); err != nil {
		s.dropped.Add(1)
		s.log.Debug("arbiter: request refused", "from", from, "err", err)
		return answer{}, false
	}
	prev, _ := s.holder(pair)
	rep, persist := s.core.Handle(s.now(), req)
	if rep.Reason == ReasonStaleCounter {
		s.dropped.Add(1)
	}
	if persist {
		if err := writeState(s.path, s.core.State()); err != nil {
			// The grant is not on disk: it must not be told.
			s.log.Error("arbiter: state not saved, reply withheld", "err", err)
			return answer{}, false
		}
	}
	if rep.Type == ReplyGrant && rep.Holder != prev {
		s.log.Info("arbiter: lease granted to a new holder", "pair", fmt.Sprintf("%08x", pair),
			"holder", fmt.Sprintf("%016x", rep.Holder), "epoch", rep.Epoch, "from", from)
	}
	return answer{reply: rep, key: key}, true
}

func (s *Server) holder(pair uint32) (uint64, bool) {
	p, ok := s.core.pairs[pair]
	if !ok {
		return 0, false
	}
	return p.holder, true
}

// Close stops Serve and closes the port.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() { err = s.conn.Close() })
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// ServerStatus is what `status` shows on an arbiter.
type ServerStatus struct {
	Mode     string       `json:"mode"`     // "arbiter"
	Starting bool         `json:"starting"` // still in the wait after the start
	Pairs    []PairStatus `json:"pairs"`
	Dropped  uint64       `json:"dropped"` // datagrams refused
}

// Status lists the pairs, their holders and lease times.
func (s *Server) Status() ServerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	pairs, starting := s.core.Status(s.now())
	if pairs == nil {
		pairs = []PairStatus{}
	}
	return ServerStatus{Mode: "arbiter", Starting: starting, Pairs: pairs, Dropped: s.dropped.Load()}
}

func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// writeState writes the state crash-safely: a temporary file, fsync,
// rename, fsync of the directory.
//
// TODO: use drivers/durable.WriteFile once it is merged (written in
// parallel); this is a small private copy of the same sequence.
func writeState(path string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileSync(path, append(b, '\n'))
}

func writeFileSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		return errors.Join(werr, os.Remove(tmp))
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
