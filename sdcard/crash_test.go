package sdcard

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"testing"
	"time"
)

var crashIterations = flag.Int("crash-iterations", 3, "receiver kills in TestCrashReceiver (the benchmark suite runs 50)")

const crashImageSize = 8 << 20

// TestCrashChild is the receiver process of TestCrashReceiver; it does
// nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("PG_CRASH_DIR")
	if dir == "" {
		t.Skip("only runs as TestCrashReceiver's child")
	}
	m, err := NewMirror(MirrorConfig{
		Device: filepath.Join(dir, "image"), StateDir: dir, PairKey: testKey,
		ListenAddr: os.Getenv("PG_CRASH_LISTEN"), PeerAddr: os.Getenv("PG_CRASH_PEER"),
		Mode: ModePeriodic, Interval: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m.Run(ctx) // until SIGKILL
}

// TestCrashReceiver kills the receiver (a subprocess, SIGKILL) at random
// moments during rounds and checks that after journal recovery its image
// is byte-identical to one of the source's complete generations (or to
// its own previous content). SIGKILL loses no page cache, so this proves
// the order of writes, fsyncs and renames against process death, not
// against a power cut of the SD card.
func TestCrashReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	if os.Getenv("PAIRGUARD_TEST_EMULATED") != "" {
		// Under qemu-user os.Args[0] is the emulated test binary, which the
		// host cannot execute directly; the power-cut model of
		// TestCrashPoints covers the same ground without a subprocess.
		t.Skip("PAIRGUARD_TEST_EMULATED is set: re-executing the test binary needs the emulator")
	}
	dir := t.TempDir()
	childDir := filepath.Join(dir, "child")
	os.Mkdir(childDir, 0o700)
	img := filepath.Join(childDir, "image")
	if err := os.WriteFile(img, make([]byte, crashImageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	la, lb := freeAddrs(t)
	src := randomDev(crashImageSize, 11)
	a := newNode(t, src, la, lb, func(c *MirrorConfig) {
		c.BandwidthLimit = 40 << 20 // rounds last long enough to be hit
		c.MinBackoff, c.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	})
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	gens := map[[32]byte]int{sha256.Sum256(make([]byte, crashImageSize)): -1}
	gens[sha256.Sum256(src.Bytes())] = 0

	var child *exec.Cmd
	startChild := func() {
		child = exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		child.Env = append(os.Environ(), "PG_CRASH_DIR="+childDir, "PG_CRASH_LISTEN="+lb, "PG_CRASH_PEER="+la)
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
	}
	kill := func() {
		child.Process.Kill()
		child.Wait()
	}
	t.Cleanup(func() {
		if child != nil && child.ProcessState == nil {
			kill()
		}
	})
	// check recovers the child's state the way a restart does and
	// compares the image with the known generations.
	check := func(what string) int {
		m, err := NewMirror(MirrorConfig{Device: img, StateDir: childDir, PairKey: testKey,
			ListenAddr: lb, PeerAddr: la, Mode: ModePeriodic, Interval: time.Hour}, testLogger(t))
		if err != nil {
			t.Fatalf("%s: recovery: %v", what, err)
		}
		st := m.Status()
		m.Close()
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		gen, ok := gens[sha256.Sum256(b)]
		if !ok {
			t.Fatalf("%s: the image is none of the source's generations (data %v)", what, st.Data)
		}
		if gen >= 0 && st.Data != DataUpToDate {
			t.Fatalf("%s: image of generation %d but data %v", what, gen, st.Data)
		}
		return gen
	}

	waitConnected := func() {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case e := <-a.m.Events():
				if e.Kind == EventConnected {
					return
				}
			case <-timeout:
				t.Fatal("the child did not connect")
			}
		}
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	startChild()
	a.start(t)
	waitConnected()
	if _, err := a.m.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	kill()
	if g := check("after the initial sync"); g != 0 {
		t.Fatalf("after the initial sync the image is generation %d", g)
	}
	hits := map[int]int{}
	prev := 0
	for iter := 1; iter <= *crashIterations; iter++ {
		// A new source generation: 1% random 4 KiB pieces and a 1 MiB region.
		for range crashImageSize / 4096 / 100 {
			p := make([]byte, 4096)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			src.WriteAt(p, int64(r.IntN(crashImageSize/4096))*4096)
		}
		region := make([]byte, 1<<20)
		for i := range region {
			region[i] = byte(iter)
		}
		src.WriteAt(region, int64(r.IntN(crashImageSize/(1<<20)))<<20)
		gens[sha256.Sum256(src.Bytes())] = iter

		startChild()
		waitConnected()
		go a.m.SyncNow(context.Background())
		time.Sleep(time.Duration(r.IntN(60_000)) * time.Microsecond)
		kill()
		g := check(fmt.Sprintf("iteration %d", iter))
		switch g {
		case iter:
			hits[1]++ // the round had completed
		case prev:
			hits[0]++ // killed before the commit
		default:
			t.Fatalf("iteration %d: image of generation %d, want %d or %d", iter, g, prev, iter)
		}
		prev = g
		// Every other iteration, let the round finish after the restart.
		if iter%2 == 0 {
			startChild()
			waitConnected()
			if _, err := a.m.SyncNow(context.Background()); err != nil {
				t.Fatal(err)
			}
			kill()
			if g := check("completed round"); g != iter {
				t.Fatalf("after a completed round the image is generation %d, want %d", g, iter)
			}
			prev = iter
		}
	}
	t.Logf("%d kills: %d before the commit, %d after", *crashIterations, hits[0], hits[1])
}
