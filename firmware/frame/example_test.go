package frame_test

import (
	"errors"
	"fmt"

	"github.com/pairguard/pairguard/firmware/frame"
)

// The heartbeat path of the daemon: one side encodes into a reused buffer,
// the other decodes, checks for replay and counts.
func Example() {
	secret := []byte("pair key from the configuration")
	key := frame.NewKey(secret)

	// Sender.
	hb := frame.Frame{
		Type:     frame.TypeHeartbeat,
		PairID:   frame.PairID(secret),
		NodeID:   1,
		Role:     2, // engine.RolePrimary
		Epoch:    5,
		BootID:   12,
		Software: "0.1.0",
	}
	buf := make([]byte, 0, frame.Len)
	var wire [][]byte
	for range 2 {
		hb.Seq++
		var err error
		if buf, err = hb.AppendBinary(buf[:0], key); err != nil {
			panic(err)
		}
		wire = append(wire, append([]byte(nil), buf...))
	}
	wire = append(wire, wire[0]) // a replay

	// Receiver.
	var replay frame.Replay
	var counters frame.Counters
	for _, b := range wire {
		var f frame.Frame
		err := frame.Decode(b, key, &f)
		if err == nil {
			err = replay.Check(f.NodeID, f.BootID, f.Seq)
		}
		counters.Record(err)
		switch {
		case errors.Is(err, frame.ErrVersion):
			fmt.Println("alarm: incompatible peer:", err)
		case err != nil:
			fmt.Println("dropped:", err)
		default:
			fmt.Printf("%v from node %d, epoch %d, seq %d, software %s\n", f.Type, f.NodeID, f.Epoch, f.Seq, f.Software)
		}
	}
	c := counters.Load()
	fmt.Printf("received %d, accepted %d, replayed %d\n", c.Received, c.Accepted, c.Replayed)
	// Output:
	// heartbeat from node 1, epoch 5, seq 1, software 0.1.0
	// heartbeat from node 1, epoch 5, seq 2, software 0.1.0
	// dropped: frame: replayed frame
	// received 3, accepted 2, replayed 1
}
