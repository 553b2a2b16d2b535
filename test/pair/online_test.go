package pair

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
	"github.com/pairguard/pairguard/test/online"
)

// onlineRuns is the number of power cuts of TestOnlinePowerLoss: 3 by
// default, PAIRGUARD_POWERLOSS_RUNS=20 (or -online-runs 20) for the
// issue's 20.
var onlineRuns = flag.Int("online-runs", envInt("PAIRGUARD_POWERLOSS_RUNS", 3), "power-loss runs of TestOnlinePowerLoss")

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

const onlineImage = 32 << 20

// onlineConfig gives n a datastore in mode online with sync replication,
// exported on its own Unix socket, and returns the socket's path.
func onlineConfig(t *testing.T, p *netns.Pair, n *netns.Node, replication string) string {
	t.Helper()
	n.Image = filepath.Join(n.Dir, "datastore.img")
	sock := filepath.Join(n.Dir, "nbd.sock")
	extra := fmt.Sprintf("\n[datastore]\ndevice = %q\nmode = \"online\"\nreplication = %q\nnbd-socket = %q\n",
		n.Image, replication, sock)
	if err := p.WriteConfig(n, netns.Options{Extra: extra}); err != nil {
		t.Fatal(err)
	}
	return sock
}

// waitMirror polls n until its mirror state is state.
func waitMirror(t *testing.T, p *netns.Pair, n *netns.Node, state string, timeout time.Duration) {
	t.Helper()
	var st netns.Status
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(20 * time.Millisecond) {
		var err error
		if st, err = p.Status(n); err == nil && st.Mirror.State == state {
			return
		}
	}
	t.Fatalf("%s: mirror %+v data %+v after %v, want %s", n.Name, st.Mirror, st.Data, timeout, state)
}

// dialExport connects to an NBD socket, retrying while the export comes up.
func dialExport(t *testing.T, sock string, timeout time.Duration) *online.Client {
	t.Helper()
	var err error
	for start := time.Now(); time.Since(start) < timeout; time.Sleep(20 * time.Millisecond) {
		var cl *online.Client
		if cl, err = online.Dial(sock); err == nil {
			return cl
		}
	}
	t.Fatalf("no export on %s after %v: %v", sock, timeout, err)
	return nil
}

// TestOnlinePowerLoss: two real daemons in namespaces, datastore in mode
// online with sync replication. Clients write batches through the main's
// NBD socket (every batch in flight at once, some writes FUA); the
// instant one client's batch is acknowledged the main loses power (its
// links go down, the daemon is SIGKILLed) while the other clients'
// writes are still in flight. The spare takes over and serves its copy on
// its own socket: every write a client saw acknowledged must read back
// from it, byte for byte (by hash). Each region of the image is written
// at most once per run, so an acknowledged write has exactly one right
// content.
func TestOnlinePowerLoss(t *testing.T) {
	if bin == "" {
		t.Skip(netns.Available())
	}
	total := 0
	for run := range *onlineRuns {
		t.Run(strconv.Itoa(run), func(t *testing.T) {
			n := onlinePowerLossRun(t, uint64(run)+uint64(time.Now().UnixNano()))
			total += n
		})
	}
	if !t.Failed() {
		t.Logf("%d runs, %d acknowledged writes, 0 lost", *onlineRuns, total)
	}
}

func onlinePowerLossRun(t *testing.T, seed uint64) int {
	const (
		slot  = 16 << 10 // a write covers the start of one slot
		slots = onlineImage / slot
		conns = 4
	)
	p := setup(t, netns.Options{})
	msock := onlineConfig(t, p, p.Main, "sync")
	ssock := onlineConfig(t, p, p.Spare, "sync")
	img := make([]byte, onlineImage)
	rand.Read(img)
	if err := os.WriteFile(p.Main.Image, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Spare.Image, make([]byte, onlineImage), 0o600); err != nil {
		t.Fatal(err)
	}
	startPair(t, p)
	waitMirror(t, p, p.Main, "in-sync", 60*time.Second)

	r := mrand.New(mrand.NewPCG(seed, 0))
	order := r.Perm(slots)
	trigger := 1 + r.IntN(12) // the batch of client 0 after which the power goes
	type acked struct {
		off uint64
		n   int
		sum [32]byte
	}
	var (
		mu     sync.Mutex
		all    []acked
		cutErr error
		once   sync.Once
	)
	cut := func() { once.Do(func() { cutErr = p.PowerOff(p.Main) }) }
	var wg sync.WaitGroup
	for c := range conns {
		cl := dialExport(t, msock, 10*time.Second)
		wg.Go(func() {
			defer cl.Close()
			r := mrand.New(mrand.NewPCG(seed, uint64(c+1)))
			next := c // client c writes the slots order[c], order[c+conns], ...
			for batch := 1; ; batch++ {
				ws := make([]online.BatchWrite, 1+r.IntN(16))
				k := 0
				for ; k < len(ws) && next < slots; k++ {
					n := []int{4 << 10, 8 << 10, 16 << 10}[r.IntN(3)]
					d := make([]byte, n)
					binary.LittleEndian.PutUint64(d, seed)
					for j := 8; j < n; j += 8 {
						binary.LittleEndian.PutUint64(d[j:], r.Uint64())
					}
					ws[k] = online.BatchWrite{Off: uint64(order[next]) * slot, Data: d, FUA: r.IntN(8) == 0}
					next += conns
				}
				ws = ws[:k]
				var err error
				if len(ws) > 0 {
					err = cl.WriteBatch(ws)
				}
				if c == 0 && (batch == trigger || len(ws) == 0) {
					cut() // the instant this batch is acknowledged
				}
				mu.Lock()
				for _, w := range ws {
					if w.Acked {
						all = append(all, acked{w.Off, len(w.Data), sha256.Sum256(w.Data)})
					}
				}
				mu.Unlock()
				if err != nil || len(ws) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	cut()
	if cutErr != nil {
		t.Fatal(cutErr)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	cl := dialExport(t, ssock, 10*time.Second)
	defer cl.Close()
	lost := 0
	for _, w := range all {
		got := make([]byte, w.n)
		if err := cl.Read(got, w.off); err != nil {
			t.Fatalf("read %d bytes at %d from the spare: %v", w.n, w.off, err)
		}
		if sha256.Sum256(got) != w.sum {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes missing on the spare", lost, len(all))
	}
	if len(all) == 0 {
		t.Fatal("no write was acknowledged before the power cut")
	}
	t.Logf("%d acknowledged writes (power cut after client 0's batch %d), all on the spare", len(all), trigger)
	return len(all)
}
