// Command online benchmarks the online replication against nbdkit's file
// plugin, with fio's nbd engine on the same image file (as root):
//
//	go run ./test/bench/online [-size 256M] [-runtime 8s] [-rate 1gbit] [-dir DIR]
//	    [-only SETUP] [-job JOB] [-profile DIR] [-rounds N]
//
// Setups, one after the other: nbdkit (file plugin), Pairguard without a
// peer, Pairguard async and Pairguard sync to a peer in another network
// namespace over a veth shaped with tc tbf. Jobs: sequential 1 MiB writes
// (QD 8), 4 KiB random writes at QD 1 and 16 (latency: fio's total, lat_ns,
// submission to completion). It prints a Markdown table,
// the link's round trip (ping) and the load average. The images are
// written in full first, so that no setup pays for allocating the file's
// blocks, and synced after every setup, so that no setup inherits dirty
// pages of another. For a setup whose peer fell behind (pull-ahead), it waits after
// the jobs until the peer is in sync again and prints how long that took.
//
// With -rounds N the picked setups alternate N times instead (interleaved:
// round r runs them in an order rotated by r, each started, its jobs run,
// stopped), so that the machine's drift lands in every setup alike. It
// prints each round's figures, then per setup the median [min, max] of
// each figure over the rounds, and the median [min, max] of the per-round
// ratios against the first picked setup (and against "no peer" if picked).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pairguard/pairguard/test/online"
)

type job struct {
	name, rw, bs string
	depth        int
}

var jobs = []job{
	{"seq 1M QD8", "write", "1M", 8},
	{"rand 4k QD1", "randwrite", "4k", 1},
	{"rand 4k QD16", "randwrite", "4k", 16},
}

var only, onlyJob, profile string

type result struct {
	MBps, IOPS, P50, P99 float64 // MB/s, IOPS, µs
}

type setup struct {
	name  string
	start func(sock string) (stop func() (caughtUp string), err error)
}

func main() {
	size := flag.String("size", "256M", "image size")
	runtime := flag.Duration("runtime", 8*time.Second, "fio runtime per job")
	rate := flag.String("rate", "1gbit", "tc tbf rate of the link to the peer")
	dir := flag.String("dir", "", "directory for images (default: a temporary one)")
	rounds := flag.Int("rounds", 0, "interleaved: alternate the picked setups this many times and report medians")
	flag.StringVar(&only, "only", "", "run only the setups whose name contains this (or one of these, comma-separated)")
	flag.StringVar(&onlyJob, "job", "", "run only the jobs whose name contains this (or one of these, comma-separated; the others print 0)")
	flag.StringVar(&profile, "profile", "", "write the Pairguard nodes' CPU profiles into this directory")
	flag.Parse()
	if err := run(*size, *runtime, *rate, *dir, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(size string, runtime time.Duration, rate, dir string, rounds int) error {
	if dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "pg-bench-online")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bin, err := online.Build(dir)
	if err != nil {
		return err
	}
	bed, err := online.NewBed(dir, bin, rate)
	if err != nil {
		return err
	}
	defer bed.Close()
	img, simg := filepath.Join(dir, "main.img"), filepath.Join(dir, "spare.img")
	images = []string{img, simg}
	for _, f := range []string{img, simg} {
		if out, err := exec.Command("truncate", "-s", size, f).CombinedOutput(); err != nil {
			return fmt.Errorf("truncate: %w: %s", err, out)
		}
		if err := fill(f); err != nil {
			return err
		}
	}
	n := 0
	pg := func(name, peer, repl string, extra ...string) func(string) (func() string, error) {
		return func(sock string) (func() string, error) {
			n++
			st := filepath.Join(dir, fmt.Sprintf("state%d", n))
			os.MkdirAll(st+"m", 0o700)
			os.MkdirAll(st+"s", 0o700)
			var spare *online.Node
			args := append([]string{"-dev", img, "-state", st + "m", "-sock", sock, "-replication", repl}, extra...)
			sargs := []string{"-dev", simg, "-state", st + "s", "-listen", online.SpareAddr + ":" + online.Port}
			if profile != "" {
				args = append(args, "-cpuprofile", filepath.Join(profile, fmt.Sprintf("main%d.pprof", n)))
				sargs = append(sargs, "-cpuprofile", filepath.Join(profile, fmt.Sprintf("spare%d.pprof", n)))
			}
			if peer != "" {
				var err error
				spare, err = bed.Start(bed.Spare, fmt.Sprintf("spare%d", n), sargs...)
				if err != nil {
					return nil, err
				}
				args = append(args, "-peer", online.SpareAddr+":"+online.Port)
			}
			main, err := bed.Start(bed.Main, fmt.Sprintf("main%d", n), args...)
			if err != nil {
				if spare != nil {
					spare.Stop()
				}
				return nil, err
			}
			return func() string {
				var note string
				if spare != nil {
					if d, behind, ok := caughtUp(main.Log); behind && ok {
						note = fmt.Sprintf("in sync again %v after the last job", d)
					} else if behind {
						note = fmt.Sprintf("not in sync %v after the last job", d)
					}
				}
				main.Stop()
				if spare != nil {
					spare.Stop()
				}
				return note
			}, nil
		}
	}
	all := []setup{
		{"nbdkit file", func(sock string) (func() string, error) {
			cmd := exec.Command("nbdkit", "-f", "-U", sock, "file", "file="+img)
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			for range 100 { // until it accepts
				if c, err := net.Dial("unix", sock); err == nil {
					c.Close()
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			return func() string { cmd.Process.Kill(); cmd.Wait(); return "" }, nil
		}},
		{"pairguard, no peer", pg("no peer", "", "sync")},
		{"pairguard async, peer over " + rate, pg("async", "peer", "async")},
		{"pairguard async pull-ahead, peer over " + rate, pg("async pull-ahead", "peer", "async", "-on-congestion", "pull-ahead")},
		{"pairguard sync, peer over " + rate, pg("sync", "peer", "sync")},
	}
	var setups []setup
	for _, s := range all {
		if picked(s.name) {
			setups = append(setups, s)
		}
	}
	if rounds > 0 {
		return interleave(bed, dir, setups, rounds, runtime, size)
	}
	var notes []string
	fmt.Printf("| setup | seq 1M QD8 MB/s | 4k QD1 IOPS | p50 µs | p99 µs | 4k QD16 IOPS | p50 µs | p99 µs |\n|---|---|---|---|---|---|---|---|\n")
	for i, s := range setups {
		rs, note, err := runSetup(s, filepath.Join(dir, fmt.Sprintf("s%d.sock", i)), runtime, size)
		if err != nil {
			return err
		}
		if note != "" {
			notes = append(notes, s.name+": the peer fell behind; "+note)
		}
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s.name, rs[0].MBps,
			rs[1].IOPS, rs[1].P50, rs[1].P99, rs[2].IOPS, rs[2].P50, rs[2].P99)
	}
	for _, n := range notes {
		fmt.Printf("\n%s\n", n)
	}
	if rtt := ping(bed); rtt != "" {
		fmt.Printf("\nlink round trip (ping, min/avg/max/mdev): %s", rtt)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average: %s", load)
	fmt.Printf("date: %s\n", time.Now().UTC().Format(time.RFC3339))
	return nil
}

// runSetup starts s on sock, runs the picked jobs (a job not picked gives
// a zero result) and stops it; note is what the stop said of the peer.
func runSetup(s setup, sock string, runtime time.Duration, size string) (rs []result, note string, err error) {
	os.Remove(sock)
	stop, err := s.start(sock)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", s.name, err)
	}
	for _, j := range jobs {
		if !contains(j.name, onlyJob) {
			rs = append(rs, result{})
			continue
		}
		r, err := fio(sock, j, runtime, size)
		if err != nil {
			stop()
			return nil, "", fmt.Errorf("%s %s: %w", s.name, j.name, err)
		}
		rs = append(rs, r)
	}
	note = stop()
	// The next setup starts with no dirty pages of the images left by this
	// one for the kernel to write back (nbdkit, killed, does not flush).
	for _, f := range images {
		if err := syncFile(f); err != nil {
			return nil, "", err
		}
	}
	return rs, note, nil
}

// images are the image files, synced after every setup.
var images []string

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// ping returns the link's round trip line (min/avg/max/mdev), or "".
func ping(bed *online.Bed) string {
	out, err := exec.Command("ip", "netns", "exec", bed.Main, "ping", "-q", "-c", "50", "-i", "0.01", online.SpareAddr).Output()
	if err != nil {
		return ""
	}
	if i := strings.Index(string(out), "rtt "); i >= 0 {
		return string(out[i:])
	}
	return ""
}

// pingAvg returns the average of a ping rtt line, in µs (0 if none).
func pingAvg(line string) float64 {
	// rtt min/avg/max/mdev = 0.021/0.036/0.100/0.012 ms
	i := strings.Index(line, "= ")
	if i < 0 {
		return 0
	}
	f := strings.Split(line[i+2:], "/")
	if len(f) < 2 {
		return 0
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0
	}
	return v * 1e3
}

// interleave runs the setups rounds times, in an order rotated every
// round, and prints each round, then the medians and the paired ratios.
func interleave(bed *online.Bed, dir string, setups []setup, rounds int, runtime time.Duration, size string) error {
	if len(setups) == 0 {
		return fmt.Errorf("no setup picked")
	}
	res := make([][][]result, len(setups)) // [setup][round][job]
	pings := make([]float64, rounds)
	notes := make([][]string, len(setups))
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("interleaved, %d rounds, %v per job; load average at the start: %s", rounds, runtime, load)
	fmt.Printf("\n| round | setup | seq 1M QD8 MB/s | 4k QD1 IOPS | p50 µs | p99 µs | 4k QD16 IOPS | p50 µs | p99 µs |\n|---|---|---|---|---|---|---|---|---|\n")
	for r := range rounds {
		for k := range setups {
			i := (k + r) % len(setups)
			s := setups[i]
			rs, note, err := runSetup(s, filepath.Join(dir, fmt.Sprintf("s%d.sock", i)), runtime, size)
			if err != nil {
				return fmt.Errorf("round %d: %w", r+1, err)
			}
			res[i] = append(res[i], rs)
			if note != "" {
				notes[i] = append(notes[i], note)
			}
			fmt.Printf("| %d | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", r+1, s.name, rs[0].MBps,
				rs[1].IOPS, rs[1].P50, rs[1].P99, rs[2].IOPS, rs[2].P50, rs[2].P99)
		}
		pings[r] = pingAvg(ping(bed))
	}
	// res[i][r] is in the order appended: round r for every setup.
	col := func(i int, f func([]result) float64) []float64 {
		var v []float64
		for _, rs := range res[i] {
			v = append(v, f(rs))
		}
		return v
	}
	figs := []struct {
		name string
		f    func([]result) float64
	}{
		{"seq 1M QD8 MB/s", func(r []result) float64 { return r[0].MBps }},
		{"4k QD1 IOPS", func(r []result) float64 { return r[1].IOPS }},
		{"p50 µs", func(r []result) float64 { return r[1].P50 }},
		{"p99 µs", func(r []result) float64 { return r[1].P99 }},
		{"4k QD16 IOPS", func(r []result) float64 { return r[2].IOPS }},
		{"p50 µs", func(r []result) float64 { return r[2].P50 }},
		{"p99 µs", func(r []result) float64 { return r[2].P99 }},
	}
	fmt.Printf("\nMedian [min, max] over %d rounds:\n\n| setup |", rounds)
	for _, f := range figs {
		fmt.Printf(" %s |", f.name)
	}
	fmt.Printf("\n|---|%s\n", strings.Repeat("---|", len(figs)))
	for i, s := range setups {
		fmt.Printf("| %s |", s.name)
		for _, f := range figs {
			fmt.Printf(" %s |", spread(col(i, f.f), "%.0f"))
		}
		fmt.Println()
	}
	ratios := func(base int, label string) {
		fmt.Printf("\nPer-round ratios against %s, median [min, max]:\n\n| setup | seq MB/s | 4k QD1 IOPS | 4k QD16 IOPS |\n|---|---|---|---|\n", label)
		for i, s := range setups {
			if i == base {
				continue
			}
			fmt.Printf("| %s |", s.name)
			for _, k := range []int{0, 1, 4} {
				a, b := col(i, figs[k].f), col(base, figs[k].f)
				var q []float64
				for r := range a {
					if b[r] > 0 {
						q = append(q, a[r]/b[r])
					}
				}
				fmt.Printf(" %s |", spread(q, "%.2fx"))
			}
			fmt.Println()
		}
	}
	ratios(0, setups[0].name)
	for i, s := range setups {
		if i != 0 && strings.Contains(s.name, "no peer") {
			ratios(i, s.name)
		}
	}
	// The QD1 latency target: p50 <= the first setup's p50 + ping + 150 µs.
	if pings[0] > 0 && contains(jobs[1].name, onlyJob) {
		fmt.Printf("\n4k QD1 p50 against %s's p50 + ping + 150 µs, per round (met/rounds):\n\n", setups[0].name)
		for i, s := range setups[1:] {
			met := 0
			var b strings.Builder
			for r := range rounds {
				lim := res[0][r][1].P50 + pings[r] + 150
				v := res[i+1][r][1].P50
				if v <= lim {
					met++
				}
				fmt.Fprintf(&b, " %.0f/%.0f", v, lim)
			}
			fmt.Printf("- %s: %d/%d (p50/bound:%s)\n", s.name, met, rounds, b.String())
		}
		fmt.Printf("\nping average per round, µs: %s\n", spread(pings, "%.0f"))
	}
	for i, s := range setups {
		if len(notes[i]) > 0 {
			fmt.Printf("\n%s: the peer fell behind in %d rounds: %s\n", s.name, len(notes[i]), strings.Join(notes[i], "; "))
		}
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average at the end: %s", load)
	fmt.Printf("date: %s\n", time.Now().UTC().Format(time.RFC3339))
	return nil
}

// spread formats the median [min, max] of v.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	if len(s) == 1 {
		return fmt.Sprintf(format, m)
	}
	return fmt.Sprintf(format+" ["+format+", "+format+"]", m, s[0], s[len(s)-1])
}

func fio(sock string, j job, runtime time.Duration, size string) (result, error) {
	out, err := exec.Command("fio", "--name=pg", "--ioengine=nbd", "--uri=nbd+unix:///?socket="+sock,
		"--rw="+j.rw, "--bs="+j.bs, fmt.Sprintf("--iodepth=%d", j.depth), "--size="+size,
		"--time_based", fmt.Sprintf("--runtime=%ds", int(runtime.Seconds())), "--randrepeat=0", "--lat_percentiles=1",
		"--output-format=json").Output()
	if err != nil {
		return result{}, fmt.Errorf("fio: %w: %s", err, out)
	}
	var v struct {
		Jobs []struct {
			Write struct {
				BW   float64 `json:"bw_bytes"`
				IOPS float64 `json:"iops"`
				// lat_ns: submission to completion (clat_ns leaves out
				// the submission, which the nbd engine's writes can
				// include the whole round trip in).
				Lat struct {
					Pct map[string]float64 `json:"percentile"`
				} `json:"lat_ns"`
			} `json:"write"`
		} `json:"jobs"`
	}
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v.Jobs) == 0 {
		return result{}, fmt.Errorf("fio output: %v", err)
	}
	w := v.Jobs[0].Write
	return result{MBps: w.BW / 1e6, IOPS: w.IOPS, P50: w.Lat.Pct["50.000000"] / 1e3, P99: w.Lat.Pct["99.000000"] / 1e3}, nil
}

// fill writes the image in full (zeros) and syncs it.
func fill(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	z := make([]byte, 1<<20)
	for off := int64(0); off < st.Size(); off += int64(len(z)) {
		if _, err := f.WriteAt(z[:min(int64(len(z)), st.Size()-off)], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// caughtUp reads the primary's log: if the peer fell behind ("peer
// behind"), it waits (at most 2 minutes) for a "peer in sync" after the
// last such line and returns how long it waited (ok: it came).
func caughtUp(logPath string) (d time.Duration, behind, ok bool) {
	start := time.Now()
	for {
		b, _ := os.ReadFile(logPath)
		s := string(b)
		i := strings.LastIndex(s, "msg=\"peer behind")
		if i < 0 {
			return 0, false, false
		}
		d := time.Since(start).Round(10 * time.Millisecond)
		if strings.Contains(s[i:], "msg=\"peer in sync\"") {
			return d, true, true
		}
		if d > 2*time.Minute {
			return d, true, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// picked: the setup's name contains one of -only's comma-separated parts.
func picked(name string) bool { return contains(name, only) }

// contains: name contains one of list's comma-separated parts.
func contains(name, list string) bool {
	for _, part := range strings.Split(list, ",") {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}
