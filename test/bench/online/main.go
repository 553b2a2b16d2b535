// Command online benchmarks the online replication against nbdkit's file
// plugin, with fio's nbd engine on the same image file (as root):
//
//	go run ./test/bench/online [-size 256M] [-runtime 8s] [-rate 1gbit] [-dir DIR]
//	    [-only SETUP] [-job JOB] [-profile DIR]
//
// Setups, one after the other: nbdkit (file plugin), Pairguard without a
// peer, Pairguard async and Pairguard sync to a peer in another network
// namespace over a veth shaped with tc tbf. Jobs: sequential 1 MiB writes
// (QD 8), 4 KiB random writes at QD 1 and 16 (latency: fio's total, lat_ns,
// submission to completion). It prints a Markdown table,
// the link's round trip (ping) and the load average. The images are
// written in full first, so that no setup pays for allocating the file's
// blocks. For a setup whose peer fell behind (pull-ahead), it waits after
// the jobs until the peer is in sync again and prints how long that took.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

func main() {
	size := flag.String("size", "256M", "image size")
	runtime := flag.Duration("runtime", 8*time.Second, "fio runtime per job")
	rate := flag.String("rate", "1gbit", "tc tbf rate of the link to the peer")
	dir := flag.String("dir", "", "directory for images (default: a temporary one)")
	flag.StringVar(&only, "only", "", "run only the setups whose name contains this (or one of these, comma-separated)")
	flag.StringVar(&onlyJob, "job", "", "run only the jobs whose name contains this (the others print 0)")
	flag.StringVar(&profile, "profile", "", "write the Pairguard nodes' CPU profiles into this directory")
	flag.Parse()
	if err := run(*size, *runtime, *rate, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(size string, runtime time.Duration, rate, dir string) error {
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
	for _, f := range []string{img, simg} {
		if out, err := exec.Command("truncate", "-s", size, f).CombinedOutput(); err != nil {
			return fmt.Errorf("truncate: %w: %s", err, out)
		}
		if err := fill(f); err != nil {
			return err
		}
	}
	type setup struct {
		name  string
		start func(sock string) (stop func(), err error)
	}
	n := 0
	var notes []string
	pg := func(name, peer, repl string, extra ...string) func(string) (func(), error) {
		return func(sock string) (func(), error) {
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
			return func() {
				if spare != nil {
					if d, behind, ok := caughtUp(main.Log); behind && ok {
						notes = append(notes, fmt.Sprintf("%s: the peer fell behind; in sync again %v after the last job", name, d))
					} else if behind {
						notes = append(notes, fmt.Sprintf("%s: the peer fell behind and was not in sync %v after the last job", name, d))
					}
				}
				main.Stop()
				if spare != nil {
					spare.Stop()
				}
			}, nil
		}
	}
	setups := []setup{
		{"nbdkit file", func(sock string) (func(), error) {
			cmd := exec.Command("nbdkit", "-f", "-U", sock, "file", "file="+img)
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			for range 100 {
				if _, err := os.Stat(sock); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			return func() { cmd.Process.Kill(); cmd.Wait() }, nil
		}},
		{"pairguard, no peer", pg("no peer", "", "sync")},
		{"pairguard async, peer over " + rate, pg("async", "peer", "async")},
		{"pairguard async pull-ahead, peer over " + rate, pg("async pull-ahead", "peer", "async", "-on-congestion", "pull-ahead")},
		{"pairguard sync, peer over " + rate, pg("sync", "peer", "sync")},
	}
	fmt.Printf("| setup | seq 1M QD8 MB/s | 4k QD1 IOPS | p50 µs | p99 µs | 4k QD16 IOPS | p50 µs | p99 µs |\n|---|---|---|---|---|---|---|---|\n")
	for i, s := range setups {
		if !picked(s.name) {
			continue
		}
		sock := filepath.Join(dir, fmt.Sprintf("s%d.sock", i))
		stop, err := s.start(sock)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		var rs []result
		for _, j := range jobs {
			if !strings.Contains(j.name, onlyJob) {
				rs = append(rs, result{})
				continue
			}
			r, err := fio(sock, j, runtime, size)
			if err != nil {
				stop()
				return fmt.Errorf("%s %s: %w", s.name, j.name, err)
			}
			rs = append(rs, r)
		}
		stop()
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s.name, rs[0].MBps,
			rs[1].IOPS, rs[1].P50, rs[1].P99, rs[2].IOPS, rs[2].P50, rs[2].P99)
	}
	for _, n := range notes {
		fmt.Printf("\n%s\n", n)
	}
	if out, err := exec.Command("ip", "netns", "exec", bed.Main, "ping", "-q", "-c", "50", "-i", "0.01", online.SpareAddr).Output(); err == nil {
		if i := strings.Index(string(out), "rtt "); i >= 0 {
			fmt.Printf("\nlink round trip (ping, min/avg/max/mdev): %s", out[i:])
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload average: %s", load)
	fmt.Printf("date: %s\n", time.Now().UTC().Format(time.RFC3339))
	return nil
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
func picked(name string) bool {
	for _, part := range strings.Split(only, ",") {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}
