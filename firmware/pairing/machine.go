package pairing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pairguard/pairguard/firmware/pairing/cpace"
)

// Config is what the pairing machine needs to know about its node.
type Config struct {
	Role     Role
	NodeID   uint64
	NodeName string
	Software string
	// Key is this node's ed25519 identity key; the peer pins it.
	Key ed25519.PublicKey
	// Settings: the main's pair-level settings, sent to the spare. Ignored on the spare.
	Settings Settings

	// Window is how long a window (main) or a join (spare) stays open,
	// acceptance included (config key pair-window, default 5m).
	Window time.Duration
	// Exchange is how long one exchange waits for the peer's next message (default 10s).
	Exchange time.Duration
	// Retry is the interval at which Hello, Reply and Accept are repeated (default 1s).
	Retry time.Duration
	// MinGap is the least time between the starts of two exchanges in one window (default 2s).
	MinGap time.Duration
	// MaxExchanges is how many exchanges one window starts before it closes (default 5).
	MaxExchanges int
	// Rand is the source of codes, nonces and scalars (default crypto/rand).
	Rand io.Reader
}

func (c *Config) setDefaults() {
	if c.Window == 0 {
		c.Window = 5 * time.Minute
	}
	if c.Exchange == 0 {
		c.Exchange = 10 * time.Second
	}
	if c.Retry == 0 {
		c.Retry = time.Second
	}
	if c.MinGap == 0 {
		c.MinGap = 2 * time.Second
	}
	if c.MaxExchanges == 0 {
		c.MaxExchanges = 5
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
}

// Validate checks the config; errors name the key.
func (c *Config) Validate() error {
	var errs []error
	if !c.Role.valid() {
		errs = append(errs, fmt.Errorf("mode: pairing needs main or spare, not %v", c.Role))
	}
	if c.NodeID == 0 {
		errs = append(errs, errors.New("node id must not be zero"))
	}
	if c.NodeName == "" || len(c.NodeName) > MaxNameLen {
		errs = append(errs, fmt.Errorf("node-name: %d bytes, want 1 to %d", len(c.NodeName), MaxNameLen))
	}
	if len(c.Software) > MaxSoftwareLen {
		errs = append(errs, fmt.Errorf("software version: %d bytes, at most %d", len(c.Software), MaxSoftwareLen))
	}
	if len(c.Key) != ed25519.PublicKeySize {
		errs = append(errs, fmt.Errorf("identity key: %d bytes, want %d", len(c.Key), ed25519.PublicKeySize))
	}
	if c.Exchange <= 0 || c.Retry <= 0 || c.MinGap < 0 || c.Retry > c.Exchange {
		errs = append(errs, fmt.Errorf("pairing timers: exchange %v, retry %v, gap %v", c.Exchange, c.Retry, c.MinGap))
	}
	if c.Window < 2*c.Exchange {
		errs = append(errs, fmt.Errorf("pair-window: %v must be at least twice the exchange timeout (%v)", c.Window, c.Exchange))
	}
	if c.MaxExchanges < 1 {
		errs = append(errs, fmt.Errorf("pairing attempts: %d, want at least 1", c.MaxExchanges))
	}
	if _, err := c.Settings.MarshalBinary(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var (
	// ErrRole: the command belongs to the other role (begin on the main, join on the spare).
	ErrRole = errors.New("pairing: wrong role for this command")
	// ErrState: the command is not possible in the current state.
	ErrState = errors.New("pairing: not possible now")
)

// Machine is the pairing state machine of one node. It is not safe for
// concurrent use; see the package documentation for how to drive it.
type Machine struct {
	cfg    Config
	now    time.Duration
	state  State
	since  time.Duration
	reason string
	record *Record

	code      Code          // main: the window's code; spare: the code being joined with
	deadline  time.Duration // end of the window or the join, acceptance included
	exchanges int           // exchanges started in this window
	lastStart time.Duration
	ex        *exchange

	out []Action
}

// exchange is one run of the protocol with one peer.
type exchange struct {
	peer           uint64
	nonceS, nonceM [NonceLen]byte
	party          *cpace.Party
	sent           Message // the last protocol message this side sent, repeated on a duplicate
	peerTag        []byte  // the tag of the reply the main confirmed (to recognise repeats)
	peerMsg        []byte  // the peer's CPace message
	reveal         []byte  // main: its check-number nonce R; spare: R once revealed
	commit         []byte  // spare: SHA-256(R) from the main's AD
	start          time.Duration
	lastSent       time.Duration

	isk      []byte
	info     Peer
	settings Settings
	pairKey  [PairKeyLen]byte
	macKey   []byte
	check    string
	localOK  bool
	peerOK   bool
	answers  int // accepts repeated while paired
}

// maxAnswers bounds the accepts a paired node repeats for a peer that
// missed its own.
const maxAnswers = 5

func (ex *exchange) sid() []byte { return append(ex.nonceS[:], ex.nonceM[:]...) }

func (ex *exchange) matches(m Message) bool {
	return m.From == ex.peer && m.NonceS == ex.nonceS && m.NonceM == ex.nonceM
}

// New returns a machine. With a record (read from the state dir) it starts
// paired; the record must belong to this node and role.
func New(cfg Config, rec *Record) (*Machine, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, state: StateUnpaired}
	if rec != nil {
		if rec.Role != cfg.Role || rec.NodeID != cfg.NodeID {
			return nil, fmt.Errorf("pairing: the pair record belongs to %v node %016x, this is %v node %016x",
				rec.Role, rec.NodeID, cfg.Role, cfg.NodeID)
		}
		r := *rec
		m.record, m.state = &r, StatePaired
	}
	return m, nil
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Record returns the pair record once paired, or nil.
func (m *Machine) Record() *Record {
	if m.record == nil {
		return nil
	}
	r := *m.record
	return &r
}

// Status returns a snapshot of the machine.
func (m *Machine) Status() Status {
	s := Status{State: m.state, Since: m.since, Reason: m.reason}
	switch m.state {
	case StateWindow:
		s.Code, s.Expires = m.code, m.deadline
	case StateJoining:
		s.Expires = m.deadline
	case StatePending:
		p, set := m.ex.info, m.ex.settings
		s.Expires, s.Peer, s.Settings = m.deadline, &p, &set
		s.Check, s.LocalAccepted, s.PeerAccepted = m.ex.check, m.ex.localOK, m.ex.peerOK
	case StatePaired:
		p, set := m.record.Peer, m.record.Settings
		s.Peer, s.Settings = &p, &set
	}
	if s.Settings == nil && m.cfg.Role == RoleMain {
		set := m.cfg.Settings
		s.Settings = &set
	}
	return s
}

// Step feeds one event at monotonic time now and returns the actions to
// carry out, in order. A command that is not possible now returns an error
// (ErrRole, ErrState) and changes nothing.
func (m *Machine) Step(now time.Duration, ev Event) ([]Action, error) {
	m.now = now
	var err error
	switch ev := ev.(type) {
	case Begin:
		err = m.begin()
	case Join:
		err = m.join(ev.Code)
	case Received:
		m.receive(ev.Msg)
	case Accept:
		err = m.accept()
	case Reject:
		err = m.reject(ReasonRejected)
	case Cancel:
		err = m.cancel()
	case Unpair:
		err = m.unpair()
	case PersistFailed:
		m.persistFailed(ev.Err)
	default:
		panic(fmt.Sprintf("pairing: unknown event %T in state %v", ev, m.state))
	}
	return m.flush(), err
}

// Tick advances time: expiry, exchange timeouts and repeats.
func (m *Machine) Tick(now time.Duration) []Action {
	m.now = now
	ex := m.ex
	switch m.state {
	case StateWindow:
		switch {
		case now >= m.deadline:
			if ex != nil {
				m.send(m.abortMsg(ReasonTimeout))
			}
			m.toUnpaired("window expired, code burned")
		case ex != nil && now-ex.start >= m.cfg.Exchange:
			m.ex = nil
			m.log(fmt.Sprintf("exchange with node %016x timed out", ex.peer))
			if m.exchanges >= m.cfg.MaxExchanges {
				m.toUnpaired(fmt.Sprintf("%s: %d exchanges, window closed, code burned", ReasonTooManyAttempts, m.exchanges))
			}
		}
	case StateJoining:
		switch {
		case now >= m.deadline:
			m.toUnpaired("join timed out: no main answered")
		case ex.party == nil:
			if now-ex.lastSent >= m.cfg.Retry {
				m.sendHello()
			}
		case now-ex.start >= m.cfg.Exchange:
			m.send(m.abortMsg(ReasonTimeout))
			m.toUnpaired("join timed out: the main did not confirm")
		case now-ex.lastSent >= m.cfg.Retry:
			m.send(ex.sent)
		}
	case StatePending:
		switch {
		case now >= m.deadline:
			m.send(m.authMsg(KindReject, ReasonTimeout))
			m.toUnpaired("not accepted on both units in time")
		case ex.localOK && now-ex.lastSent >= m.cfg.Retry:
			m.send(m.authMsg(KindAccept, reasonInvalid))
		}
	case StatePaired:
		if ex != nil && now >= m.deadline+m.cfg.Exchange {
			m.ex = nil // the session's keys are no longer needed
		}
	}
	return m.flush()
}

func (m *Machine) begin() error {
	if m.cfg.Role != RoleMain {
		return fmt.Errorf("%w: pair begin runs on the main", ErrRole)
	}
	if m.state != StateUnpaired {
		return m.stateErr("pair begin")
	}
	code, err := NewCode(m.cfg.Rand)
	if err != nil {
		return err
	}
	m.code, m.deadline, m.exchanges = code, m.now+m.cfg.Window, 0
	m.lastStart = m.now - m.cfg.MinGap
	m.setState(StateWindow, "pair begin")
	m.log(fmt.Sprintf("pairing window open for %v", m.cfg.Window))
	return nil
}

func (m *Machine) join(code Code) error {
	if m.cfg.Role != RoleSpare {
		return fmt.Errorf("%w: pair join runs on the spare", ErrRole)
	}
	if m.state != StateUnpaired {
		return m.stateErr("pair join")
	}
	code, err := ParseCode(string(code))
	if err != nil {
		return err
	}
	ex := &exchange{start: m.now}
	if _, err := io.ReadFull(m.cfg.Rand, ex.nonceS[:]); err != nil {
		return fmt.Errorf("pairing: nonce: %w", err)
	}
	m.code, m.ex, m.deadline = code, ex, m.now+m.cfg.Window
	m.setState(StateJoining, "pair join")
	m.log("looking for the main's pairing window")
	m.sendHello()
	return nil
}

func (m *Machine) sendHello() {
	m.send(Message{Kind: KindHello, From: m.cfg.NodeID, NonceS: m.ex.nonceS})
}

func (m *Machine) receive(msg Message) {
	if msg.From == 0 || msg.From == m.cfg.NodeID {
		return // a reflection of our own message
	}
	if (msg.Kind == KindHello) != (msg.To == 0) || (msg.To != 0 && msg.To != m.cfg.NodeID) {
		return // not for us
	}
	switch m.state {
	case StateWindow:
		m.receiveWindow(msg)
	case StateJoining:
		m.receiveJoining(msg)
	case StatePending, StatePaired:
		m.receiveConfirmed(msg)
	}
}

// receiveWindow: the main with an open window.
func (m *Machine) receiveWindow(msg Message) {
	ex := m.ex
	switch msg.Kind {
	case KindHello:
		if ex != nil {
			// One exchange at a time. The spare repeats its hello until
			// the share arrives: repeat the share, at most once per Retry.
			if msg.From == ex.peer && msg.NonceS == ex.nonceS && m.now-ex.lastSent >= m.cfg.Retry {
				m.send(ex.sent)
			}
			return
		}
		if m.now-m.lastStart < m.cfg.MinGap || m.exchanges >= m.cfg.MaxExchanges {
			return // rate limit: the hello is dropped, the spare repeats it
		}
		m.startExchange(msg)
	case KindReply:
		if ex != nil && ex.matches(msg) {
			m.confirmReply(msg)
		}
	case KindAbort:
		if ex != nil && ex.matches(msg) {
			m.toUnpaired(fmt.Sprintf("the spare aborted the exchange (%s), code burned", msg.Reason))
		}
	}
}

func (m *Machine) startExchange(hello Message) {
	ex := &exchange{peer: hello.From, nonceS: hello.NonceS, start: m.now}
	if _, err := io.ReadFull(m.cfg.Rand, ex.nonceM[:]); err != nil {
		m.log(fmt.Sprintf("no exchange with node %016x: nonce: %v", hello.From, err))
		return
	}
	settings, _ := m.cfg.Settings.MarshalBinary() // checked by Validate
	ex.reveal = make([]byte, revealLen)
	if _, err := io.ReadFull(m.cfg.Rand, ex.reveal); err != nil {
		m.log(fmt.Sprintf("no exchange with node %016x: nonce: %v", hello.From, err))
		return
	}
	commit := sha256.Sum256(ex.reveal)
	ad := encodeAD(adFields{m.cfg.NodeName, m.cfg.Software, m.cfg.Key, settings, commit[:]})
	party, err := cpace.New(m.cfg.Rand, true, m.code.prs(), channel(m.cfg.NodeID, hello.From), ex.sid(), ad)
	if err != nil {
		m.log(fmt.Sprintf("no exchange with node %016x: %v", hello.From, err))
		return
	}
	m.exchanges++
	m.lastStart = m.now
	ex.party = party
	ex.sent = Message{Kind: KindShare, From: m.cfg.NodeID, To: ex.peer, NonceS: ex.nonceS, NonceM: ex.nonceM, Share: party.Message()}
	m.ex = ex
	m.send(ex.sent)
	m.log(fmt.Sprintf("exchange %d of %d with node %016x", m.exchanges, m.cfg.MaxExchanges, ex.peer))
}

// confirmReply: the main checks the spare's share and tag.
func (m *Machine) confirmReply(msg Message) {
	ex := m.ex
	isk, err := ex.party.Finish(msg.Share)
	if err != nil {
		m.failExchange(ReasonBadMessage, err.Error())
		return
	}
	if !cpace.CheckTag(isk, msg.Share, msg.Tag) {
		m.failExchange(ReasonWrongCode, fmt.Sprintf("node %016x did not confirm the code", ex.peer))
		return
	}
	_, ad, _ := cpace.ParseMessage(msg.Share) // Finish parsed it
	a, err := decodeAD(ad)
	if err != nil {
		m.failExchange(ReasonBadMessage, err.Error())
		return
	}
	ex.isk, ex.peerMsg, ex.peerTag = isk, msg.Share, msg.Tag
	ex.info = Peer{NodeID: ex.peer, Name: a.name, Software: a.software, Key: a.key}
	ex.settings = m.cfg.Settings
	m.deriveKeys(ex)
	ex.sent = Message{Kind: KindFinish, From: m.cfg.NodeID, To: ex.peer, NonceS: ex.nonceS, NonceM: ex.nonceM,
		Tag: cpace.Tag(isk, ex.party.Message()), Reveal: ex.reveal}
	m.code = "" // used up: the window admits no other spare
	m.send(ex.sent)
	m.setState(StatePending, "exchange confirmed")
	m.logPending()
}

// failExchange ends a window or join whose exchange failed: the peer is
// told (without authentication, there is no key), the code is burned.
func (m *Machine) failExchange(r Reason, detail string) {
	m.send(m.abortMsg(r))
	what := "window closed"
	if m.cfg.Role == RoleSpare {
		what = "join ended"
	}
	m.toUnpaired(fmt.Sprintf("%s: %s; %s, code burned", r, detail, what))
}

// receiveJoining: the spare looking for the main or in the exchange.
func (m *Machine) receiveJoining(msg Message) {
	ex := m.ex
	switch msg.Kind {
	case KindShare:
		if ex.party != nil || msg.NonceS != ex.nonceS {
			return // the first share for our hello wins
		}
		m.answerShare(msg)
	case KindFinish:
		if ex.party == nil || !ex.matches(msg) {
			return
		}
		if !cpace.CheckTag(ex.isk, ex.peerMsg, msg.Tag) {
			m.failExchange(ReasonConfirmFailed, fmt.Sprintf("node %016x did not confirm the exchange", ex.peer))
			return
		}
		if sum := sha256.Sum256(msg.Reveal); !hmac.Equal(sum[:], ex.commit) {
			m.failExchange(ReasonConfirmFailed, fmt.Sprintf("node %016x revealed a check nonce it had not committed to", ex.peer))
			return
		}
		ex.reveal = msg.Reveal
		m.deriveKeys(ex)
		m.code = ""
		m.setState(StatePending, "exchange confirmed")
		m.logPending()
	case KindAbort:
		if ex.party != nil && ex.matches(msg) {
			m.toUnpaired(fmt.Sprintf("the main aborted the exchange (%s)", msg.Reason))
		}
	}
}

func (m *Machine) answerShare(msg Message) {
	ex := m.ex
	ex.peer, ex.nonceM, ex.start = msg.From, msg.NonceM, m.now
	ad := encodeAD(adFields{name: m.cfg.NodeName, software: m.cfg.Software, key: m.cfg.Key})
	party, err := cpace.New(m.cfg.Rand, false, m.code.prs(), channel(msg.From, m.cfg.NodeID), ex.sid(), ad)
	if err != nil {
		m.toUnpaired(fmt.Sprintf("join failed: %v", err))
		return
	}
	isk, err := party.Finish(msg.Share)
	if err != nil {
		m.failExchange(ReasonBadMessage, err.Error())
		return
	}
	_, peerAD, _ := cpace.ParseMessage(msg.Share)
	a, err := decodeAD(peerAD)
	if err == nil && len(a.commit) == 0 {
		err = fmt.Errorf("%w: no check-number commitment", ErrMalformed)
	}
	if err == nil {
		err = ex.settings.UnmarshalBinary(a.settings)
	}
	if err != nil {
		m.failExchange(ReasonBadMessage, err.Error())
		return
	}
	ex.party, ex.isk, ex.peerMsg = party, isk, msg.Share
	ex.info, ex.commit = Peer{NodeID: msg.From, Name: a.name, Software: a.software, Key: a.key}, a.commit
	ex.sent = Message{Kind: KindReply, From: m.cfg.NodeID, To: msg.From, NonceS: ex.nonceS, NonceM: ex.nonceM,
		Share: party.Message(), Tag: cpace.Tag(isk, party.Message())}
	m.send(ex.sent)
}

// receiveConfirmed: after the key confirmation only authenticated messages
// change anything; repeats of the exchange's last message are answered.
func (m *Machine) receiveConfirmed(msg Message) {
	ex := m.ex
	if ex == nil || !ex.matches(msg) {
		return
	}
	switch msg.Kind {
	case KindReply:
		// The spare missed the finish and repeats its reply.
		if m.cfg.Role == RoleMain && hmac.Equal(msg.Tag, ex.peerTag) && m.now-ex.lastSent >= m.cfg.Retry {
			m.send(ex.sent)
		}
	case KindAccept:
		if !m.checkAuth(msg) {
			return
		}
		switch {
		case m.state == StatePaired:
			// The peer missed our accept: repeat it, at most once per
			// Retry and a few times in all, so that two paired nodes on a
			// slow line cannot keep answering each other.
			if m.now-ex.lastSent >= m.cfg.Retry && ex.answers < maxAnswers {
				ex.answers++
				m.send(m.authMsg(KindAccept, reasonInvalid))
			}
		case ex.peerOK:
		case ex.localOK:
			ex.peerOK = true
			m.complete()
		default:
			ex.peerOK = true
			m.log(fmt.Sprintf("node %016x accepted; waiting for the accept on this unit", ex.peer))
		}
	case KindReject:
		if !m.checkAuth(msg) {
			return
		}
		if m.state == StatePaired {
			m.emit(Forget{})
			m.record = nil
		}
		m.toUnpaired(fmt.Sprintf("node %016x ended the pairing (%s)", ex.peer, msg.Reason))
	}
}

func (m *Machine) accept() error {
	if m.state != StatePending {
		return m.stateErr("pair accept")
	}
	ex := m.ex
	if ex.localOK {
		return nil
	}
	ex.localOK = true
	if ex.peerOK {
		m.complete()
		return nil
	}
	m.send(m.authMsg(KindAccept, reasonInvalid))
	m.log(fmt.Sprintf("accepted on this unit; waiting for node %016x", ex.peer))
	return nil
}

// complete: both accepted. Persist first, then tell the peer.
func (m *Machine) complete() {
	ex := m.ex
	rec := Record{Role: m.cfg.Role, NodeID: m.cfg.NodeID, Peer: ex.info, PairKey: ex.pairKey, Settings: ex.settings}
	m.emit(Persist{Record: rec})
	m.send(m.authMsg(KindAccept, reasonInvalid))
	m.record = &rec
	m.setState(StatePaired, "accepted on both units")
	m.log(fmt.Sprintf("paired with %q, node %016x", ex.info.Name, ex.peer))
}

func (m *Machine) reject(r Reason) error {
	if m.state != StatePending {
		return m.stateErr("pair reject")
	}
	m.send(m.authMsg(KindReject, r))
	m.toUnpaired(fmt.Sprintf("%s on this unit", r))
	return nil
}

func (m *Machine) cancel() error {
	switch m.state {
	case StateWindow:
		if m.ex != nil {
			m.send(m.abortMsg(ReasonCancelled))
		}
		m.toUnpaired("window cancelled, code burned")
	case StateJoining:
		if m.ex.party != nil {
			m.send(m.abortMsg(ReasonCancelled))
		}
		m.toUnpaired("join cancelled")
	case StatePending:
		return m.reject(ReasonCancelled)
	default:
		return m.stateErr("pair cancel")
	}
	return nil
}

func (m *Machine) unpair() error {
	if m.state != StatePaired {
		return m.stateErr("unpair")
	}
	peer := m.record.Peer
	m.emit(Forget{})
	m.record = nil
	m.toUnpaired(fmt.Sprintf("unpaired from %q, node %016x", peer.Name, peer.NodeID))
	return nil
}

func (m *Machine) persistFailed(err error) {
	if m.state != StatePaired {
		return
	}
	if m.ex != nil {
		m.send(m.authMsg(KindReject, ReasonPersistFailed))
	}
	m.record = nil
	m.toUnpaired(fmt.Sprintf("%s: %v", ReasonPersistFailed, err))
}

// deriveKeys expands the ISK (HKDF-SHA512, salt sid) into the pair key,
// the key of the session's Accept and Reject tags, and the check number,
// which also depends on the main's nonce R (see the package documentation).
func (m *Machine) deriveKeys(ex *exchange) {
	sid := ex.sid()
	k := func(label string, n int) []byte {
		b, err := hkdf.Key(sha512.New, ex.isk, sid, label, n)
		if err != nil {
			panic(fmt.Sprintf("pairing: hkdf in state %v: %v", m.state, err)) // only for n > 255*64
		}
		return b
	}
	copy(ex.pairKey[:], k("pairguard pair key v1", PairKeyLen))
	ex.macKey = k("pairguard session mac v1", 32)
	check, err := hkdf.Key(sha512.New, append(bytes.Clone(ex.isk), ex.reveal...), sid, "pairguard check number v1", 8)
	if err != nil {
		panic(fmt.Sprintf("pairing: hkdf in state %v: %v", m.state, err))
	}
	ex.check = fmt.Sprintf("%06d", binary.BigEndian.Uint64(check)%1_000_000)
}

func (m *Machine) authMsg(kind Kind, r Reason) Message {
	ex := m.ex
	msg := Message{Kind: kind, From: m.cfg.NodeID, To: ex.peer, NonceS: ex.nonceS, NonceM: ex.nonceM, Reason: r}
	msg.Tag = authTag(ex.macKey, &msg)
	return msg
}

func (m *Machine) checkAuth(msg Message) bool {
	return hmac.Equal(msg.Tag, authTag(m.ex.macKey, &msg))
}

func authTag(key []byte, msg *Message) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg.authInput())
	return h.Sum(nil)
}

func (m *Machine) abortMsg(r Reason) Message {
	ex := m.ex
	return Message{Kind: KindAbort, From: m.cfg.NodeID, To: ex.peer, NonceS: ex.nonceS, NonceM: ex.nonceM, Reason: r}
}

// channel is CPace's channel identifier: both node ids, main first.
func channel(main, spare uint64) []byte {
	var ids [16]byte
	binary.BigEndian.PutUint64(ids[:8], main)
	binary.BigEndian.PutUint64(ids[8:], spare)
	return cpace.PrefixFreeCat([]byte("pairguard pairing v1"), ids[:8], ids[8:])
}

func (m *Machine) logPending() {
	ex := m.ex
	m.log(fmt.Sprintf("peer %q, node %016x, software %q; check number %s: accept on both units",
		ex.info.Name, ex.peer, ex.info.Software, ex.check))
}

func (m *Machine) toUnpaired(reason string) {
	m.code, m.ex, m.reason = "", nil, reason
	m.setState(StateUnpaired, reason)
	m.log(reason)
}

func (m *Machine) setState(s State, reason string) {
	if s == m.state {
		panic(fmt.Sprintf("pairing: transition from %v to itself", s))
	}
	prev := m.state
	m.state, m.since = s, m.now
	m.emit(StateChanged{State: s, Prev: prev, Reason: reason})
}

func (m *Machine) stateErr(cmd string) error {
	hint := ""
	if m.state == StatePaired {
		hint = "; unpair first"
	}
	return fmt.Errorf("%w: %s in state %v%s", ErrState, cmd, m.state, hint)
}

func (m *Machine) send(msg Message) {
	if m.ex != nil {
		m.ex.lastSent = m.now
	}
	m.emit(Send{To: msg.To, Msg: msg})
}

func (m *Machine) log(msg string) { m.emit(Log{Kind: "pairing", Message: msg}) }

func (m *Machine) emit(a Action) { m.out = append(m.out, a) }

func (m *Machine) flush() []Action {
	out := m.out
	m.out = nil
	return out
}
