package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether"
	"github.com/pairguard/pairguard/firmware/engine"
	"github.com/pairguard/pairguard/firmware/frame"
)

// nopConn is a failover line that takes every frame and delivers none.
type nopConn struct{ last []byte }

var nopMAC = mac(9)

func (c *nopConn) Send(_ net.HardwareAddr, b []byte) error {
	c.last = append(c.last[:0], b...)
	return nil
}
func (c *nopConn) Recv([]byte) (int, net.HardwareAddr, error) {
	return 0, nil, net.ErrClosed
}
func (c *nopConn) SetReadDeadline(time.Time) error { return nil }
func (c *nopConn) Addr() net.HardwareAddr          { return slices.Clone(nopMAC) } // a copy, as rawether's
func (c *nopConn) Refresh() (bool, error)          { return false, nil }
func (c *nopConn) Close() error                    { return nil }

// allocsPerFrame reports the allocations of the daemon's own part of
// sending one heartbeat (encode, sign, hand to the socket) and of
// receiving one (decode, check the HMAC and the replay window).
func allocsPerFrame(t testing.TB) (send, recv float64) {
	cfg := testConfig(t.(*testing.T), "main", t.TempDir())
	lan2, lan1 := &nopConn{}, &nopConn{}
	d, err := New(cfg, Deps{LAN2: lan2, LAN1: lan1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.wg.Wait) // the replay marks are written in the background, into the temp dir
	info := engine.PeerInfo{Kind: engine.FrameHeartbeat, NodeID: 7, BootID: 1, Nonce: 9, Mode: engine.ModeSpare,
		Role: engine.RoleSecondary, Epoch: 3, Data: engine.DataUpToDate, Software: "1.0.0"}
	act := engine.Send{Info: info, LAN2: true, LAN1: true}
	send = testing.AllocsPerRun(200, func() { d.send(act) })
	// Frames from a peer: each with the next sequence number.
	f := frameFrom(info, d.key.Load().PairID())
	var seq uint64
	var buf []byte
	src := mac(7)
	var software string
	recv = testing.AllocsPerRun(200, func() {
		seq++
		f.Seq = seq
		buf, _ = f.AppendBinary(buf[:0], d.key.Load())
		if _, ok := d.decode(engine.PathLAN2, buf, src, &software); !ok {
			t.Fatal("frame refused")
		}
	})
	return send, recv
}

// Per-frame allocations grow the heap at 500 frames a second (2 ms) and
// so the collector's work: none on the send and the receive path.
func TestNoAllocationPerFrame(t *testing.T) {
	send, recv := allocsPerFrame(t)
	if send != 0 || recv != 0 {
		t.Errorf("allocations per frame: send %v, receive %v; want 0", send, recv)
	}
}

// The loop's part of a received heartbeat: the engine's step and the
// actions it returns. (A heartbeat falling due still costs the engine two
// small allocations: its action list and the Send in it.)
func TestLoopAllocsPerFrame(t *testing.T) {
	cfg := testConfig(t, "main", t.TempDir())
	lan2, lan1 := &nopConn{}, &nopConn{}
	d, err := New(cfg, Deps{LAN2: lan2, LAN1: lan1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.wg.Wait) // the replay marks are written in the background, into the temp dir
	d.apply(d.eng.Start(d.mono()))
	info := engine.PeerInfo{Kind: engine.FrameHeartbeat, NodeID: 7, BootID: 1, Nonce: 9, Mode: engine.ModeSpare,
		Role: engine.RoleSecondary, Epoch: 0, Data: engine.DataUpToDate, Software: Version}
	f := frameFrom(info, d.key.Load().PairID())
	var seq uint64
	var buf []byte
	var software string
	src := mac(7)
	step := func() {
		seq++
		f.Seq = seq
		buf, _ = f.AppendBinary(buf[:0], d.key.Load())
		r, ok := d.decode(engine.PathLAN2, buf, src, &software)
		if !ok {
			t.Fatal("frame refused")
		}
		d.receive(r)
	}
	for range 50 { // past the first frames (the peer comes up, echoes)
		step()
	}
	// Echo this node's nonce (from its last frame), so that the frames
	// are fresh and the engine takes them.
	var own frame.Frame
	if err := frame.Decode(lan2.last, d.key.Load(), &own); err != nil {
		t.Fatal(err)
	}
	f.Echo = own.Nonce
	for range 50 {
		step()
	}
	if st := d.eng.Status(); st.Peer.State != engine.PeerUp {
		t.Fatalf("peer %v, want up", st.Peer.State)
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("allocations per received frame on the loop: %v, want 0", n)
	}
}

// queueConn is a drainable failover line whose queue the test fills.
type queueConn struct {
	nopConn
	queue [][]byte
	src   net.HardwareAddr
}

func (c *queueConn) RecvNow(buf []byte) (int, net.HardwareAddr, time.Time, error) {
	if len(c.queue) == 0 {
		return 0, nil, time.Time{}, rawether.ErrNoFrame
	}
	n := copy(buf, c.queue[0])
	c.queue = c.queue[1:]
	return n, c.src, time.Now(), nil
}

// Drain mode's part of a received heartbeat, from the socket's queue to
// the engine's step: no allocation either.
func TestDrainAllocsPerFrame(t *testing.T) {
	cfg := testConfig(t, "main", t.TempDir())
	lan2, lan1 := &queueConn{src: mac(7)}, &queueConn{src: mac(7)}
	d, err := New(cfg, Deps{LAN2: lan2, LAN1: lan1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.wg.Wait)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if !useDrain(2*time.Millisecond, lan2, lan1) {
		t.Fatal("queueConn is not drainable")
	}
	d.startDrain(ctx)
	d.apply(d.eng.Start(d.mono()))
	info := engine.PeerInfo{Kind: engine.FrameHeartbeat, NodeID: 7, BootID: 1, Nonce: 9, Mode: engine.ModeSpare,
		Role: engine.RoleSecondary, Epoch: 0, Data: engine.DataUpToDate, Software: Version}
	f := frameFrom(info, d.key.Load().PairID())
	var seq uint64
	bufs := make([][]byte, 1)
	step := func() {
		seq++
		f.Seq = seq
		bufs[0], _ = f.AppendBinary(bufs[0][:0], d.key.Load())
		lan2.queue = bufs
		d.drainFrames()
	}
	for range 50 {
		step()
	}
	var own frame.Frame
	if err := frame.Decode(lan2.last, d.key.Load(), &own); err != nil {
		t.Fatal(err)
	}
	f.Echo = own.Nonce
	for range 50 {
		step()
	}
	if st := d.eng.Status(); st.Peer.State != engine.PeerUp {
		t.Fatalf("peer %v, want up", st.Peer.State)
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("allocations per drained frame: %v, want 0", n)
	}
}
