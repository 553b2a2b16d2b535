// Command mirror benchmarks the datastore mirror (package sdcard): two
// mirrors in one process over loopback TLS, image files on disk, an
// initial sync and then rounds after changes of 1% and 10% random 4 KiB
// blocks and one contiguous region. It prints wall time, bytes on the
// wire, CPU seconds (both ends together, from getrusage) and checks the
// wire budget of issue 5: for the 1% case at most 1.5× the changed bytes
// plus 1 MiB of hashes per GiB.
//
//	go run ./test/bench/mirror -size 1GiB [-dir DIR] [-bandwidth 0] [-hash xxh3-128]
//
// With -rsync it also times rsync (daemon in network namespace
// pgbench-a, client in pgbench-b, a veth pair shaped with tc tbf to
// -rsync-rate) on the same changes; that needs root, ip, tc and rsync,
// and is skipped with the reason printed when they are missing.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/sdcard"
)

type result struct {
	name     string
	changed  int64 // bytes changed on the source
	wall     time.Duration
	wire     uint64
	cpu      time.Duration
	blocks   uint64
	records  uint64
	inPlace  bool
	checkMax int64 // wire budget, 0 when none applies
}

func main() {
	sizeFlag := flag.String("size", "1GiB", "image size (KiB, MiB, GiB suffixes)")
	dirFlag := flag.String("dir", "", "directory for the images (default a temporary one, removed after)")
	bw := flag.Int64("bandwidth", 0, "bandwidth limit in bytes/s (0: none)")
	hashFlag := flag.String("hash", "xxh3-128", "block hash: xxh3-128 or blake3")
	region := flag.String("region", "64MiB", "contiguous region changed in the last case")
	doRsync := flag.Bool("rsync", false, "also time rsync between network namespaces with tc tbf shaping")
	rsyncRate := flag.String("rsync-rate", "1gbit", "tc tbf rate of the rsync comparison")
	runs := flag.Int("runs", 1, "runs of the rsync comparison (figures as median [min, max])")
	loopback := flag.Bool("loopback", true, "run the in-process loopback part")
	casesFlag := flag.String("cases", "initial,1%,10%,region", "cases of the rsync comparison")
	compFlag := flag.String("compressions", "off", "mirror variants of the rsync comparison: off, zstd or both (comma separated; suffixes /nolowat: bulk reads without SO_RCVLOWAT; /nobuffer: bulk reads a system call per TLS record; /nodirect: the initial sync through the page cache; /nogather: a system call per TLS record)")
	rsyncZ := flag.Bool("rsync-z", false, "also time rsync -z in the comparison")
	rsyncFsync := flag.Bool("rsync-fsync", false, "also time rsync --fsync (durable on the target when it ends, as a mirror round is) in the comparison")
	flag.StringVar(&compression, "compression", "off", "internal: the end's compression")
	verbose := flag.Bool("v", false, "log the mirrors")
	kind := flag.String("image", "random", "source image: random, or mixed (ext4 with a SQLite database, JPEG images, logs and free space)")
	flag.Float64Var(&zeroFrac, "zero", 0, "fraction of the source image (its end) left as zero blocks, like free space")
	roleFlag := flag.String("role", "", "internal: run one end (sender|receiver) for -rsync")
	img := flag.String("img", "", "internal: the end's image")
	state := flag.String("state", "", "internal: the end's state dir")
	listen := flag.String("listen", "", "internal: the end's address")
	peer := flag.String("peer", "", "internal: the peer's address")
	flag.StringVar(&memLimit, "memory-limit", "16MiB", "soft memory limit of the mirror processes of -rsync (the daemon's memory-limit)")
	cpuProf := flag.String("cpuprofile", "", "write a CPU profile of the loopback run (or of this end with -role) to this file")
	flag.Parse()
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	if *roleFlag != "" {
		role(*roleFlag, *img, *state, *listen, *peer, compression)
		return
	}

	size, err := parseSize(*sizeFlag)
	check(err)
	regionSize, err := parseSize(*region)
	check(err)
	hash, err := sdcard.ParseHashKind(*hashFlag)
	check(err)
	dir := *dirFlag
	if dir == "" {
		dir, err = os.MkdirTemp("", "pgbench-mirror-")
		check(err)
		defer os.RemoveAll(dir)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}

	src, dst := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	if *kind == "mixed" {
		fmt.Printf("writing a %s mixed source image in %s\n", human(size), dir)
		check(writeMixed(src, size))
	} else {
		fmt.Printf("writing a %s random source image in %s (%.0f%% zero blocks)\n", human(size), dir, zeroFrac*100)
		check(writeRandom(src, size, 1))
	}
	f, err := os.Create(dst)
	check(err)
	check(f.Truncate(size))
	f.Close()

	r := rand.New(rand.NewPCG(2, 3))
	var results []result
	runMirror := func() {
		la, lb := freeAddrs()
		mk := func(dev, state, listen, peer string) *sdcard.Mirror {
			check(os.MkdirAll(state, 0o700))
			m, err := sdcard.NewMirror(sdcard.MirrorConfig{
				Device: dev, StateDir: state, PairKey: []byte("benchmark pair key, 32 bytes...."),
				ListenAddr: listen, PeerAddr: peer, Mode: sdcard.ModePeriodic, Interval: time.Hour,
				BandwidthLimit: *bw, Hash: hash, ReplyTimeout: 10 * time.Minute,
			}, log)
			check(err)
			return m
		}
		a := mk(src, filepath.Join(dir, "state-a"), la, lb)
		b := mk(dst, filepath.Join(dir, "state-b"), lb, la)
		defer a.Close()
		defer b.Close()
		_, err := a.NewGeneration(1)
		check(err)
		a.SetPrimary(true)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cpu0 := cpuTime()
		t0 := time.Now()
		go a.Run(ctx)
		go b.Run(ctx)
		var first sdcard.RoundStats
		for e := range a.Events() {
			if e.Kind == sdcard.EventRoundDone {
				first = e.Round
				break
			}
			if e.Kind == sdcard.EventRoundFailed {
				check(e.Err)
			}
		}
		results = append(results, result{name: "initial sync", changed: size, wall: time.Since(t0),
			wire: first.WireBytes, cpu: cpuTime() - cpu0, blocks: first.Blocks, records: first.Records,
			inPlace: b.Status().LastRound.InPlace})

		cases := []struct {
			name   string
			change func() int64
			budget func(changed int64) int64
		}{
			{"1% random 4 KiB", func() int64 { return changeRandom(src, size, 0.01, r) },
				func(c int64) int64 { return c*3/2 + (size+(1<<30)-1)/(1<<30)*(1<<20) }},
			{"10% random 4 KiB", func() int64 { return changeRandom(src, size, 0.10, r) }, nil},
			{human(regionSize) + " contiguous", func() int64 { return changeRegion(src, size, regionSize, r) }, nil},
		}
		for _, c := range cases {
			changed := c.change()
			cpu0 := cpuTime()
			t0 := time.Now()
			st, err := a.SyncNow(ctx)
			check(err)
			res := result{name: c.name, changed: changed, wall: time.Since(t0), wire: st.WireBytes,
				cpu: cpuTime() - cpu0, blocks: st.Blocks, records: st.Records, inPlace: b.Status().LastRound.InPlace}
			if c.budget != nil {
				res.checkMax = c.budget(changed)
			}
			results = append(results, res)
		}
		diff, err := a.Verify(ctx)
		check(err)
		if len(diff) != 0 {
			check(fmt.Errorf("verify lists %d differing blocks", len(diff)))
		}
		if s := b.Status(); s.State != sdcard.MirrorInSync || s.Data != sdcard.DataUpToDate {
			check(fmt.Errorf("receiver ends %v with data %v", s.State, s.Data))
		}
	}
	if !*loopback {
		if err := rsyncCompare(dir, size, regionSize, compareOpts{rate: *rsyncRate, runs: *runs,
			compression: strings.Split(*compFlag, ","), rsyncZ: *rsyncZ, rsyncFsync: *rsyncFsync, cases: strings.Split(*casesFlag, ",")}); err != nil {
			check(err)
		}
		return
	}
	runMirror()
	same, err := sameFiles(src, dst)
	check(err)
	if !same {
		check(errors.New("the images differ at the end"))
	}

	fmt.Printf("\nmirror, %s image, hash %v, bandwidth limit %s, loopback TLS 1.3, CPU = both ends\n", human(size), hash, limit(*bw))
	fmt.Printf("%-22s %10s %9s %12s %8s %8s %9s  %s\n", "case", "changed", "wall", "wire", "wire/chg", "CPU s", "blocks", "check")
	failed := false
	for _, r := range results {
		chk := ""
		if r.checkMax > 0 {
			chk = fmt.Sprintf("wire <= %s: ", human(r.checkMax))
			if int64(r.wire) <= r.checkMax {
				chk += "ok"
			} else {
				chk += "FAIL"
				failed = true
			}
		}
		if r.inPlace {
			chk += " (receiver wrote in place: round larger than the journal)"
		}
		fmt.Printf("%-22s %10s %8.2fs %12s %8.3f %8.2f %9d  %s\n", r.name, human(r.changed), r.wall.Seconds(),
			human(int64(r.wire)), float64(r.wire)/float64(r.changed), r.cpu.Seconds(), r.blocks, chk)
	}
	if *doRsync {
		if err := rsyncCompare(dir, size, regionSize, compareOpts{rate: *rsyncRate, runs: *runs,
			compression: strings.Split(*compFlag, ","), rsyncZ: *rsyncZ, rsyncFsync: *rsyncFsync, cases: strings.Split(*casesFlag, ",")}); err != nil {
			fmt.Printf("\nrsync comparison skipped: %v\n", err)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mirror bench:", err)
		os.Exit(2)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func limit(bw int64) string {
	if bw <= 0 {
		return "none"
	}
	return human(bw) + "/s"
}

func freeAddrs() (string, string) {
	var out []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		out = append(out, l.Addr().String())
		defer l.Close() // both held open, so the two ports differ
	}
	slices.Sort(out)
	return out[0], out[1]
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// compression is a -role end's compression setting.
var compression string

// memLimit is the -rsync mirror processes' soft memory limit.
var memLimit string

// zeroFrac is the fraction of the source image, at its end, left zero.
var zeroFrac float64

func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if float64(off) >= float64(size)*(1-zeroFrac) {
			clear(buf[:n])
		} else {
			r.Read(buf[:n])
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// changeRandom overwrites a fraction of the image's 4 KiB blocks, chosen
// at random without repetition, with random bytes; it returns the bytes changed.
func changeRandom(path string, size int64, frac float64, r *rand.Rand) int64 {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	check(err)
	defer f.Close()
	n := size / 4096
	want := int(float64(n) * frac)
	picked := map[int64]bool{}
	buf := make([]byte, 4096)
	for len(picked) < want {
		i := r.Int64N(n)
		if picked[i] {
			continue
		}
		picked[i] = true
		for j := range buf {
			buf[j] = byte(r.Uint32())
		}
		_, err := f.WriteAt(buf, i*4096)
		check(err)
	}
	check(f.Sync())
	return int64(want) * 4096
}

func changeRegion(path string, size, region int64, r *rand.Rand) int64 {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	check(err)
	defer f.Close()
	region = min(region, size)
	off := r.Int64N((size-region)/4096+1) * 4096
	buf := make([]byte, region)
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(r.Uint32())
	}
	rand.NewChaCha8(seed).Read(buf) // new content each time: not a move rsync could find
	_, err = f.WriteAt(buf, off)
	check(err)
	check(f.Sync())
	return region
}

func sameFiles(a, b string) (bool, error) {
	sum := func(p string) ([32]byte, error) {
		f, err := os.Open(p)
		if err != nil {
			return [32]byte{}, err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return [32]byte{}, err
		}
		return [32]byte(h.Sum(nil)), nil
	}
	x, err := sum(a)
	if err != nil {
		return false, err
	}
	y, err := sum(b)
	return x == y, err
}
