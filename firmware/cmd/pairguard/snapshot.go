package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/daemon"
	"github.com/pairguard/pairguard/firmware/frame/pcapfile"
	"github.com/pairguard/pairguard/firmware/frame/wireshark"
)

// snapshotReadme opens every snapshot: what each file holds.
const snapshotReadme = `Pairguard support snapshot (pairguard snapshot -w FILE.tar.gz)

status.txt, status.json   pairguard status, as text and as status --json
logbook.txt, logbook.json the logbook (pairguard log)
capture.pcap              failover-line frames captured now (pairguard capture);
                          open with the dissector pairguard.lua:
                          tshark -X lua_script:pairguard.lua -r capture.pcap -V
pairguard.lua             the Wireshark dissector of this version
config.toml               the config file, pair keys and other secrets redacted
config-check.txt          what pairguard check-config says about it
board.json                the board description in effect (overrides applied)
versions.txt              this binary, the daemon and the peer
kernel.txt                kernel version, command line, uptime, memory, kernel log
links.txt                 network interfaces, addresses, routes, neighbours
state-dir.txt, hooks.txt  file listings (names, sizes, times; no contents)
errors.txt                what could not be collected, and why (absent if nothing)
`

// snapshotOptions are the flags of `pairguard snapshot`.
type snapshotOptions struct {
	out     string        // -w
	config  string        // --config
	socket  string        // --socket; "" takes the config's, then the default
	frames  int           // -n: frames to capture
	capture time.Duration // how long to wait for them
}

func runSnapshot(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o snapshotOptions
	fs.StringVar(&o.out, "w", "", "the .tar.gz file to write")
	fs.StringVar(&o.config, "config", "/etc/pairguard/pairguard.toml", "config file")
	fs.StringVar(&o.socket, "socket", os.Getenv("PAIRGUARD_SOCKET"), "control socket")
	fs.IntVar(&o.frames, "n", 20, "frames to capture")
	fs.DurationVar(&o.capture, "capture-time", 5*time.Second, "how long to wait for the frames")
	if err := fs.Parse(args); err != nil {
		return usagef("snapshot: %v", err)
	}
	if o.out == "" {
		return usagef("snapshot needs -w FILE.tar.gz")
	}
	f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // it holds logs and topology
	if err != nil {
		return err
	}
	missing, err := writeSnapshot(context.Background(), o, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(o.out)
		return fmt.Errorf("snapshot: %w", err)
	}
	fmt.Fprintf(out, "snapshot written to %s\n", o.out)
	if len(missing) > 0 {
		fmt.Fprintf(out, "not collected (see errors.txt in the archive):\n  %s\n", strings.Join(missing, "\n  "))
	}
	return nil
}

// snapshot builds the archive. A part that cannot be collected (the daemon
// is down, a file is unreadable) is listed in errors.txt and in the returned
// list; only a failure to write the archive is an error.
type snapshot struct {
	tw      *tar.Writer
	dir     string
	now     time.Time
	missing []string
}

func (s *snapshot) add(name string, data []byte) error {
	hdr := &tar.Header{Name: s.dir + "/" + name, Mode: 0o600, Size: int64(len(data)), ModTime: s.now, Typeflag: tar.TypeReg}
	if err := s.tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := s.tw.Write(data)
	return err
}

func (s *snapshot) miss(part string, err error) {
	s.missing = append(s.missing, fmt.Sprintf("%s: %v", part, err))
}

func writeSnapshot(ctx context.Context, o snapshotOptions, w io.Writer) ([]string, error) {
	now := time.Now().UTC()
	host, _ := os.Hostname()
	gz := gzip.NewWriter(w)
	s := &snapshot{tw: tar.NewWriter(gz), now: now,
		dir: fmt.Sprintf("pairguard-snapshot-%s-%s", sanitize(host), now.Format("20060102T150405Z"))}
	var files []file
	add := func(name string, data []byte) { files = append(files, file{name, data}) }
	add("README.txt", []byte(snapshotReadme))

	// The config, read raw so that an invalid one is collected too.
	var cfg *config.Config
	if raw, err := os.ReadFile(o.config); err != nil {
		s.miss("config", err)
	} else {
		add("config.toml", redact(raw))
		var check string
		if cfg, err = config.Load(o.config); err != nil {
			check = fmt.Sprintf("%s: INVALID\n%v\n", o.config, err)
		} else {
			check = fmt.Sprintf("%s: ok (mode %s, heartbeat %v, failover-time %v)\n", o.config, cfg.Mode, cfg.Heartbeat.Interval, cfg.Heartbeat.FailoverTime)
		}
		add("config-check.txt", []byte(check))
	}
	socket := o.socket
	if socket == "" && cfg != nil {
		socket = cfg.Control.Socket
	}
	if socket == "" {
		socket = config.DefaultSocket
	}
	if cfg != nil && cfg.BoardDesc != nil {
		if b, err := json.MarshalIndent(cfg.BoardDesc, "", "  "); err != nil {
			s.miss("board", err)
		} else {
			add("board.json", append(b, '\n'))
		}
	} else if cfg != nil {
		add("board.json", []byte("null\n"))
	}

	// What the daemon says.
	ask := func(timeout time.Duration, cmd string, n int) (control.Response, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := control.Do(ctx, socket, request(cmd, n))
		if err == nil && !resp.OK {
			err = errors.New(resp.Error)
		}
		return resp, err
	}
	var status struct {
		Software string `json:"software"`
		Peer     struct {
			Software string `json:"software"`
		} `json:"peer"`
	}
	if resp, err := ask(10*time.Second, "status", 0); err != nil {
		s.miss("status", err)
	} else {
		add("status.txt", []byte(resp.Text))
		add("status.json", append(resp.Data, '\n'))
		json.Unmarshal(resp.Data, &status)
	}
	if resp, err := ask(10*time.Second, "log", 100000); err != nil {
		s.miss("logbook", err)
	} else {
		add("logbook.txt", []byte(resp.Text))
		add("logbook.json", append(resp.Data, '\n'))
	}
	if o.frames > 0 {
		if resp, err := ask(o.capture, "capture", o.frames); err != nil {
			s.miss("capture", fmt.Errorf("%w (no %d frames within %v: is the peer silent?)", err, o.frames, o.capture))
		} else {
			var pcap bytes.Buffer
			if err := writePcap(&pcap, resp.Data); err != nil {
				s.miss("capture", err)
			} else {
				add("capture.pcap", pcap.Bytes())
			}
		}
	}
	add("pairguard.lua", wireshark.Dissector)

	// Versions, kernel, links, listings.
	var v strings.Builder
	fmt.Fprintf(&v, "pairguard (this binary) %s, %s, %s/%s\n", daemon.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&v, "daemon software         %s\n", orNone(status.Software))
	fmt.Fprintf(&v, "peer software           %s\n", orNone(status.Peer.Software))
	add("versions.txt", []byte(v.String()))
	add("kernel.txt", s.collect("kernel",
		readPart("/proc/version"), readPart("/proc/cmdline"), readPart("/proc/uptime"),
		readPart("/proc/loadavg"), readPart("/proc/meminfo"), cmdPart("dmesg")))
	add("links.txt", s.collect("links", sysNet, cmdPart("ip", "-d", "addr"), cmdPart("ip", "-s", "link"),
		cmdPart("ip", "route"), cmdPart("ip", "-6", "route"), cmdPart("ip", "neigh")))
	stateDir, hooksDir := config.DefaultStateDir, "/etc/pairguard/hooks.d"
	if cfg != nil {
		stateDir, hooksDir = cfg.StateDir, cfg.Hooks.Dir
	}
	add("state-dir.txt", s.collect("state-dir", listPart(stateDir)))
	add("hooks.txt", s.collect("hooks", listPart(hooksDir)))
	if len(s.missing) > 0 {
		add("errors.txt", []byte(strings.Join(s.missing, "\n")+"\n"))
	}

	for _, f := range files {
		if err := s.add(f.name, f.data); err != nil {
			return s.missing, err
		}
	}
	if err := s.tw.Close(); err != nil {
		return s.missing, err
	}
	return s.missing, gz.Close()
}

// request is the control request of one snapshot step: cmd with n entries
// (log) or frames (capture) when n > 0.
func request(cmd string, n int) control.Request {
	return control.Request{Cmd: cmd, N: n}
}

// requestCount is the n of a request built by request.
func requestCount(r control.Request) int { return r.N }

type file struct {
	name string
	data []byte
}

// part is one section of a text file of the snapshot: a title and what it
// produced.
type part func() (title string, out []byte, err error)

// collect runs the parts into one text; a failed part is noted in place and
// in errors.txt.
func (s *snapshot) collect(name string, parts ...part) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		title, out, err := p()
		fmt.Fprintf(&b, "=== %s\n", title)
		b.Write(out)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			b.WriteByte('\n')
		}
		if err != nil {
			fmt.Fprintf(&b, "(%v)\n", err)
			s.miss(name+": "+title, err)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func readPart(path string) part {
	return func() (string, []byte, error) {
		b, err := os.ReadFile(path)
		return path, b, err
	}
}

func cmdPart(name string, args ...string) part {
	return func() (string, []byte, error) {
		title := strings.Join(append([]string{name}, args...), " ")
		if _, err := exec.LookPath(name); err != nil {
			return title, nil, fmt.Errorf("%s is not installed", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		return title, out, err
	}
}

// sysNet reads the state of every network interface from sysfs, for images
// without iproute2.
func sysNet() (string, []byte, error) {
	const root = "/sys/class/net"
	ents, err := os.ReadDir(root)
	if err != nil {
		return root, nil, err
	}
	var b bytes.Buffer
	for _, e := range ents {
		fmt.Fprintf(&b, "%s:", e.Name())
		for _, attr := range []string{"operstate", "carrier", "speed", "duplex", "mtu", "address",
			"statistics/rx_packets", "statistics/tx_packets", "statistics/rx_errors", "statistics/tx_errors",
			"statistics/rx_dropped", "statistics/tx_dropped", "carrier_changes"} {
			v, err := os.ReadFile(filepath.Join(root, e.Name(), attr))
			if err == nil {
				fmt.Fprintf(&b, " %s=%s", filepath.Base(attr), strings.TrimSpace(string(v)))
			}
		}
		b.WriteByte('\n')
	}
	return root, b.Bytes(), nil
}

// listPart lists the files under dir with size, mode and time, never their
// contents (the state dir holds keys).
func listPart(dir string) part {
	return func() (string, []byte, error) {
		var lines []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			lines = append(lines, fmt.Sprintf("%s %10d %s %s", info.Mode(), info.Size(), info.ModTime().UTC().Format(time.RFC3339), rel))
			return nil
		})
		sort.Strings(lines)
		return dir, []byte(strings.Join(lines, "\n")), err
	}
}

// secretKey matches config keys whose values are secrets: pair-key, the
// arbiter's per-pair key, and anything named like a key, secret, password
// or token (but not pair-key-file, a path).
var secretKey = regexp.MustCompile(`(?mi)((?:^|[{,])\s*"?[A-Za-z0-9_.-]*(?:key|secret|password|passphrase|token)"?\s*=\s*)("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,}#]+)`)

// redact replaces the value of every secret key of a TOML config by
// "REDACTED", keeping everything else as written.
func redact(src []byte) []byte {
	return secretKey.ReplaceAll(src, []byte(`${1}"REDACTED"`))
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// sanitize keeps a host name usable in a file name.
func sanitize(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}

// writePcap writes the frames of a capture answer (JSON) as a pcap stream.
func writePcap(w io.Writer, data []byte) error {
	var frames []daemon.CapturedFrame
	if err := json.Unmarshal(data, &frames); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	pw, err := pcapfile.NewWriter(w)
	if err != nil {
		return err
	}
	for _, c := range frames {
		src, _ := net.ParseMAC(c.Src)
		if err := pw.Write(pcapfile.Record{Time: c.Time, Dst: broadcast, Src: src, Payload: c.Payload}); err != nil {
			return err
		}
	}
	return nil
}
