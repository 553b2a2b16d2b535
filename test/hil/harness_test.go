package hil

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pairguard/pairguard/board"
)

// Network namespaces, bridges and interfaces of the pair, all prefixed pg.
const (
	nsSwitch = "pghil-sw" // QEMU and the LAN 1/LAN 2 bridges
	nsClient = "pghil-cl" // the client on LAN 1
	brLAN1   = "pgbr1"
	brLAN2   = "pgbr2"

	serviceAddr = "10.0.1.10"
	clientAddr  = "10.0.1.100"
	pairKey     = "6869 6c2d 7061 6972 2d6b 6579 2d30 3031" // any fixed secret
	boardName   = "qemu-virt-arm64"

	heartbeatInterval  = 100 * time.Millisecond
	heartbeatMissed    = 5
	failoverTime       = 1 * time.Second
	connectionWaitTime = 10 * time.Second // the default; tolerates one board booting late

	sdSize = 16 << 20 // the SD card image; QEMU wants a power of two
)

// spec is one board of the pair.
type spec struct {
	name     string // main or spare
	mode     string // configured mode
	n        int    // 1 for main, 2 for spare: MACs, taps, addresses
	peerN    int
	lan1Addr string // management address on LAN 1
	// datastore, when set, adds a [datastore] table with these lines (the
	// device is the board's SD card).
	datastore string
	// sdFill fills the first bytes of the SD card image before boot.
	sdFill []byte
	// sdImage, when set, is an SD card image the board boots with as it
	// is (kept across power cuts) instead of a fresh one.
	sdImage string
	// files are added to the per-board drive (path in the rootfs -> content).
	files map[string]string
	// teachIn leaves pair-key out (teachin_test.go): the pair is taught in.
	teachIn bool
}

var (
	mainSpec  = spec{name: "main", mode: "main", n: 1, peerN: 2, lan1Addr: "10.0.1.11/24"}
	spareSpec = spec{name: "spare", mode: "spare", n: 2, peerN: 1, lan1Addr: "10.0.1.12/24"}
)

func (s spec) mac(lan int) string   { return fmt.Sprintf("52:54:00:70:%02x:%02x", s.n, lan) }
func (s spec) tap(lan int) string   { return fmt.Sprintf("pg%s%d", s.name, lan) }
func (s spec) lan2Addr() string     { return fmt.Sprintf("10.0.2.%d/24", s.n) }
func (s spec) peerLAN2Addr() string { return fmt.Sprintf("10.0.2.%d", s.peerN) }

// config is the board's /etc/pairguard/pairguard.toml (keys as in the README).
func (s spec) config(b *board.Board) string {
	if s.teachIn {
		return s.teachInConfig(b)
	}
	return fmt.Sprintf(`# written by the hardware-in-the-loop harness
mode = %q
node-name = %q
board = %q
pair-key = %q
recovery = "manual"

[lan1]
interface = %q
service-address = "%s/24"

[lan2]
interface = %q
address = %q
peer-address = %q

[heartbeat]
interval = %q
missed = %d
failover-time = %q
connection-wait-time = %q
%s`, s.mode, s.name, boardName, pairKey, b.LAN1, serviceAddr, b.LAN2, s.lan2Addr(), s.peerLAN2Addr(),
		heartbeatInterval, heartbeatMissed, failoverTime, connectionWaitTime, s.datastoreTable(b))
}

func (s spec) datastoreTable(b *board.Board) string {
	if s.datastore == "" {
		return ""
	}
	return fmt.Sprintf("\n[datastore]\ndevice = %q\n%s\n", b.Datastore, s.datastore)
}

// boardEnv is /etc/hil/board.env, read by the image's /init.
func (s spec) boardEnv(b *board.Board) string {
	return fmt.Sprintf("HIL_HOSTNAME=%s\nHIL_LAN1_MAC=%s\nHIL_LAN1_IF=%s\nHIL_LAN1_ADDR=%s\nHIL_LAN2_MAC=%s\nHIL_LAN2_IF=%s\nHIL_LAN2_ADDR=%s\n",
		s.name, s.mac(1), b.LAN1, s.lan1Addr, s.mac(2), b.LAN2, s.lan2Addr())
}

// image is a built HIL image (run.sh's output).
type image struct {
	dir, kernel, initrd, dtb string
	board                    *board.Board
	lines                    map[string]int // LED/button name -> PL061 offset
}

var (
	imgOnce sync.Once
	img     *image
	imgErr  error
)

// requireImage skips the test unless the HIL image is built and the test runs
// as root, and returns the image with its named device tree.
func requireImage(t *testing.T) *image {
	t.Helper()
	dir := os.Getenv("PAIRGUARD_HIL_IMAGE")
	if dir == "" {
		t.Skip("hil: PAIRGUARD_HIL_IMAGE is not set; `make hil` (test/hil/run.sh) builds the QEMU image and runs these scenarios")
	}
	if os.Geteuid() != 0 {
		t.Skip("hil: needs root for taps, bridges and network namespaces")
	}
	for _, c := range []string{"qemu-system-aarch64", "ip", "fdtput", "ping"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("hil: %s not installed (test/hil/run.sh installs it)", c)
		}
	}
	imgOnce.Do(func() {
		killStale(filepath.Join(filepath.Dir(dir), "runs"))
		img, imgErr = loadImage(dir)
	})
	if imgErr != nil {
		t.Fatal(imgErr)
	}
	return img
}

// killStale ends boards left running by an interrupted earlier run: the QEMU
// processes named in the runs' pid files, if they still are those QEMUs.
func killStale(runs string) {
	pidfiles, _ := filepath.Glob(filepath.Join(runs, "*", "*", "qemu.pid"))
	for _, pf := range pidfiles {
		b, err := os.ReadFile(pf)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(pf)) {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

func loadImage(dir string) (*image, error) {
	b, err := board.Load(boardName, nil)
	if err != nil {
		return nil, fmt.Errorf("hil: %w", err)
	}
	im := &image{
		dir:    dir,
		kernel: filepath.Join(dir, "vmlinuz"),
		initrd: filepath.Join(dir, "initramfs.cpio.gz"),
		dtb:    filepath.Join(dir, "virt-named.dtb"),
		board:  b,
		lines:  map[string]int{},
	}
	for _, f := range []string{im.kernel, im.initrd} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("hil: image incomplete (run test/hil/run.sh): %w", err)
		}
	}
	// Name the PL061 lines as the board file says: dump QEMU's device tree
	// with the same machine options as the boot and add gpio-line-names.
	names := make([]string, 8)
	for _, o := range []board.Output{b.LEDs.RoleGreen, b.LEDs.RoleRed, b.LEDs.RoleAmber, b.LEDs.Failover, b.Button.Input} {
		if o.Kind != board.OutputGPIO || o.Offset < 0 || o.Offset >= len(names) {
			continue
		}
		names[o.Offset] = o.Line
		im.lines[o.Line] = o.Offset
	}
	raw := filepath.Join(dir, "virt.dtb")
	if out, err := exec.Command("qemu-system-aarch64", append(machineArgs(), "-M", "virt,dumpdtb="+raw)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hil: dumpdtb: %w: %s", err, out)
	}
	if out, err := exec.Command("cp", raw, im.dtb).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hil: %w: %s", err, out)
	}
	args := append([]string{"-t", "s", im.dtb, "/pl061@9030000", "gpio-line-names"}, names...)
	if out, err := exec.Command("fdtput", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hil: fdtput: %w: %s", err, out)
	}
	return im, nil
}

// machineArgs are the options that shape the device tree; dumpdtb must use
// the same ones as the boot.
func machineArgs() []string {
	return []string{"-cpu", "cortex-a53", "-m", "256", "-smp", "1", "-display", "none"}
}

// sh runs a command and fails the test on error.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("hil: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command in a network namespace.
func inNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return sh(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// pair is one run of the emulated pair: the network and the boards.
type pair struct {
	t      *testing.T
	img    *image
	dir    string
	boards map[string]*node
}

// newPair builds the network of the pair: the switch namespace with the
// LAN 1 and LAN 2 bridges and the four taps, and the client namespace on
// LAN 1. Everything is removed in t.Cleanup.
func newPair(t *testing.T) *pair {
	t.Helper()
	im := requireImage(t)
	dir := filepath.Join(filepath.Dir(im.dir), "runs", t.Name())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{nsSwitch, nsClient} {
		_ = exec.Command("ip", "netns", "del", ns).Run() // left over from a killed run
	}
	t.Cleanup(func() {
		for _, ns := range []string{nsClient, nsSwitch} {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("hil: ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	sh(t, "ip", "netns", "add", nsSwitch)
	sh(t, "ip", "netns", "add", nsClient)
	inNS(t, nsSwitch, "ip", "link", "set", "lo", "up")
	for _, br := range []string{brLAN1, brLAN2} {
		inNS(t, nsSwitch, "ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
		inNS(t, nsSwitch, "ip", "link", "set", br, "up")
	}
	for _, s := range []spec{mainSpec, spareSpec} {
		for lan, br := range map[int]string{1: brLAN1, 2: brLAN2} {
			inNS(t, nsSwitch, "ip", "tuntap", "add", "dev", s.tap(lan), "mode", "tap")
			inNS(t, nsSwitch, "ip", "link", "set", s.tap(lan), "master", br, "up")
		}
	}
	inNS(t, nsSwitch, "ip", "link", "add", "pgcl0", "type", "veth", "peer", "name", "pgcl1", "netns", nsClient)
	inNS(t, nsSwitch, "ip", "link", "set", "pgcl0", "master", brLAN1, "up")
	inNS(t, nsClient, "ip", "link", "set", "lo", "up")
	inNS(t, nsClient, "ip", "addr", "add", clientAddr+"/24", "dev", "pgcl1")
	inNS(t, nsClient, "ip", "link", "set", "pgcl1", "up")
	return &pair{t: t, img: im, dir: dir, boards: map[string]*node{}}
}

// node is one running board.
type node struct {
	t      *testing.T
	spec   spec
	dir    string
	pid    int
	cmd    *exec.Cmd
	exited chan struct{} // closed when QEMU has exited
	booted time.Time
	img    *image

	mu     sync.Mutex
	conn   net.Conn
	marker int
}

// boot starts the boards of specs at once and waits until each has run its
// init scripts (the daemon is started).
func (p *pair) boot(specs ...spec) []*node {
	p.t.Helper()
	var nodes []*node
	for _, s := range specs {
		nodes = append(nodes, p.start(s))
	}
	for _, n := range nodes {
		// 2.5-7 s on an idle host; far longer while other jobs load it.
		n.waitConsole("Starting pairguard: OK", 180*time.Second)
		p.t.Logf("hil: %s up %.1fs after launch", n.spec.name, time.Since(n.booted).Seconds())
	}
	return nodes
}

func (p *pair) start(s spec) *node {
	t := p.t
	t.Helper()
	dir := filepath.Join(p.dir, s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, spec: s, dir: dir, img: p.img}
	// The per-board drive: a tar archive unpacked by /init over the rootfs.
	drive := filepath.Join(dir, "board.tar")
	files := map[string]string{
		"etc/pairguard/pairguard.toml": s.config(p.img.board),
		"etc/hil/board.env":            s.boardEnv(p.img.board),
	}
	for k, v := range s.files {
		files[k] = v
	}
	if err := writeTar(drive, files); err != nil {
		t.Fatal(err)
	}
	// The datastore: an SD card, whose size must be a power of two.
	sd := s.sdImage
	if sd == "" {
		sd = filepath.Join(dir, "sd.img")
		if err := os.WriteFile(sd, s.sdFill, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(sd, sdSize); err != nil {
			t.Fatal(err)
		}
	}
	// Each boot gets its own device tree with fresh rng-seed and kaslr-seed:
	// the dumped one carries the seed of the dump, which the kernel credits,
	// so every boot of every board would start its CRNG from the same seed.
	dtb := filepath.Join(dir, "virt.dtb")
	if err := seededDTB(p.img.dtb, dtb); err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", nsSwitch, "qemu-system-aarch64", "-M", "virt"}
	args = append(args, machineArgs()...)
	args = append(args,
		"-no-reboot",
		"-kernel", p.img.kernel, "-initrd", p.img.initrd, "-dtb", dtb,
		"-append", "console=ttyAMA0 panic=-1 quiet",
		"-drive", "file="+drive+",if=none,format=raw,id=bd", "-device", "virtio-blk-device,drive=bd",
		"-device", "sdhci-pci", "-drive", "file="+sd+",if=none,format=raw,id=sd", "-device", "sd-card,drive=sd",
		"-netdev", "tap,id=l1,ifname="+s.tap(1)+",script=no,downscript=no", "-device", "virtio-net-device,netdev=l1,mac="+s.mac(1),
		"-netdev", "tap,id=l2,ifname="+s.tap(2)+",script=no,downscript=no", "-device", "virtio-net-device,netdev=l2,mac="+s.mac(2),
		"-chardev", "socket,id=con,path="+n.path("con.sock")+",server=on,wait=off,logfile="+n.path("con.log"),
		"-serial", "chardev:con",
		"-monitor", "unix:"+n.path("mon.sock")+",server=on,wait=off",
		// The LED trace goes to QEMU's stderr, which is unbuffered: a -D
		// log file is block-buffered and shows changes only much later.
		"-trace", "pl061_set_output", "-msg", "timestamp=on",
		"-pidfile", n.path("qemu.pid"),
	)
	trace, err := os.Create(n.path("trace.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer trace.Close() // QEMU has its own copy
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = trace, trace
	// QEMU dies with the test process, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	n.booted = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("hil: starting %s: %v", s.name, err)
	}
	// `ip netns exec` execs QEMU: the pid is QEMU's.
	n.cmd = cmd
	n.pid = cmd.Process.Pid
	n.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			n.dumpLogs()
		}
		n.powerOff()
	})
	p.boards[s.name] = n
	return n
}

// seededDTB copies the device tree src to dst with new random seeds.
func seededDTB(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("hil: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("hil: %w", err)
	}
	for prop, words := range map[string]int{"rng-seed": 8, "kaslr-seed": 2} {
		seed := make([]byte, 4*words)
		if _, err := rand.Read(seed); err != nil {
			return fmt.Errorf("hil: %w", err)
		}
		args := []string{"-t", "x", dst, "/chosen", prop}
		for i := 0; i < words; i++ {
			args = append(args, hex.EncodeToString(seed[4*i:4*i+4]))
		}
		if out, err := exec.Command("fdtput", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("hil: fdtput %s: %w: %s", prop, err, out)
		}
	}
	return nil
}

func (n *node) path(name string) string { return filepath.Join(n.dir, name) }

func writeTar(path string, files map[string]string) error {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for name, body := range files {
		mode := int64(0o644)
		if strings.HasPrefix(name, "etc/pairguard/hooks.d/") || strings.HasPrefix(name, "usr/bin/") {
			mode = 0o755 // hooks and programs
		}
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := io.WriteString(w, body); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	// A whole number of 512-byte sectors for the block device.
	if r := buf.Len() % 65536; r != 0 {
		buf.Write(make([]byte, 65536-r))
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// powerOff cuts the board's power: QEMU is killed, the guest gets no warning.
// It returns when the kill was sent.
func (n *node) powerOff() time.Time {
	n.mu.Lock()
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
	n.mu.Unlock()
	if n.pid == 0 {
		return time.Time{}
	}
	at := time.Now()
	_ = n.cmd.Process.Kill()
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.t.Errorf("hil: %s: QEMU did not exit after SIGKILL", n.spec.name)
	}
	n.pid = 0
	return at
}

// monitor sends one HMP command to the board's QEMU monitor.
func (n *node) monitor(cmd string) {
	n.t.Helper()
	c, err := net.Dial("unix", n.path("mon.sock"))
	if err != nil {
		n.t.Fatalf("hil: %s monitor: %v", n.spec.name, err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := readUntil(r, "(qemu) "); err != nil {
		n.t.Fatalf("hil: %s monitor prompt: %v", n.spec.name, err)
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		n.t.Fatalf("hil: %s monitor: %v", n.spec.name, err)
	}
	if err := readUntil(r, "(qemu) "); err != nil {
		n.t.Fatalf("hil: %s monitor %q: %v", n.spec.name, cmd, err)
	}
}

func readUntil(r *bufio.Reader, s string) error {
	var seen []byte
	for !bytes.HasSuffix(seen, []byte(s)) {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		seen = append(seen, b)
	}
	return nil
}

// pressButton presses the front-panel button: system_powerdown pulses PL061
// line 3 high for 100 ms (a short press).
func (n *node) pressButton() { n.monitor("system_powerdown") }

// consoleLog returns everything the board printed on its serial console.
func (n *node) consoleLog() string {
	b, _ := os.ReadFile(n.path("con.log"))
	return strings.ReplaceAll(string(b), "\r", "")
}

// waitConsole waits until the console log contains s.
func (n *node) waitConsole(s string, timeout time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(n.consoleLog(), s) {
		if time.Now().After(deadline) {
			n.t.Fatalf("hil: %s: %q not on the console after %v", n.spec.name, s, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run types cmd on the serial console's shell and returns its output and exit
// status; the test fails if no answer comes within timeout.
func (n *node) run(cmd string, timeout time.Duration) (string, int) {
	n.t.Helper()
	out, code, err := n.tryRun(cmd, timeout)
	if err != nil {
		n.t.Fatal(err)
	}
	return out, code
}

// tryRun is run without failing the test. The output is framed by markers
// that the echoed command line does not contain (the quotes split them).
func (n *node) tryRun(cmd string, timeout time.Duration) (string, int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.dialConsole(); err != nil {
		return "", 0, err
	}
	n.marker++
	start, end := fmt.Sprintf("HILS%d:", n.marker), fmt.Sprintf("HILE%d:", n.marker)
	line := fmt.Sprintf("echo 'HILS%d'':'; %s; echo 'HILE%d'\":$?\"\n", n.marker, cmd, n.marker)
	if _, err := io.WriteString(n.conn, line); err != nil {
		return "", 0, fmt.Errorf("hil: %s console: %w", n.spec.name, err)
	}
	re := regexp.MustCompile(regexp.QuoteMeta(start) + `\n((?s:.*?))` + regexp.QuoteMeta(end) + `(\d+)`)
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(n.consoleLog()); m != nil {
			code, _ := strconv.Atoi(m[2])
			return m[1], code, nil
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("hil: %s: %q gave no answer in %v", n.spec.name, cmd, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// typeRaw sends bytes to the serial console as they are.
func (n *node) typeRaw(s string) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.dialConsole(); err != nil {
		n.t.Fatal(err)
	}
	if _, err := io.WriteString(n.conn, s); err != nil {
		n.t.Fatalf("hil: %s console: %v", n.spec.name, err)
	}
}

// dialConsole connects to the console socket once; n.mu is held.
func (n *node) dialConsole() error {
	if n.conn != nil {
		return nil
	}
	c, err := net.Dial("unix", n.path("con.sock"))
	if err != nil {
		return fmt.Errorf("hil: %s console: %w", n.spec.name, err)
	}
	n.conn = c
	go func() { _, _ = io.Copy(io.Discard, c) }() // the log file records it all
	return nil
}

// waitConsoleAfter waits until the console log, from byte offset mark on,
// contains s, and returns that part of the log.
func (n *node) waitConsoleAfter(mark int, s string, timeout time.Duration) string {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		log := n.consoleLog()
		if mark > len(log) {
			mark = len(log)
		}
		if strings.Contains(log[mark:], s) {
			return log[mark:]
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("hil: %s: %q not on the console after %v; got %q", n.spec.name, s, timeout, log[mark:])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// status is the part of `pairguard status --json` the scenarios read.
type status struct {
	Mode  string `json:"mode"`
	Role  string `json:"role"`
	Epoch uint64 `json:"epoch"`
	Peer  struct {
		State  string `json:"state"`
		Missed int    `json:"missed"`
	} `json:"peer"`
	Data struct {
		State string `json:"state"`
	} `json:"data"`
	Mirror struct {
		State string `json:"state"`
	} `json:"mirror"`
	Alarms   []string `json:"alarms"`
	Unacked  bool     `json:"unacknowledged"`
	Failover bool     `json:"failover-led"`
}

// status asks the daemon through the console; ok is false while the daemon
// does not answer (still starting).
func (n *node) status() (status, bool) {
	n.t.Helper()
	// Not fatal: a board stalled by a loaded host (TCG) answers late, and
	// the callers poll until their own deadline.
	out, code, err := n.tryRun("pairguard status --json", 20*time.Second)
	var s status
	if err != nil {
		n.t.Logf("%v", err)
		return s, false
	}
	if code != 0 {
		return s, false
	}
	i := strings.Index(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &s) != nil {
		n.t.Logf("hil: %s: unreadable status: %q", n.spec.name, out)
		return s, false
	}
	return s, true
}

// waitStatus polls the status until cond holds.
func (n *node) waitStatus(what string, timeout time.Duration, cond func(status) bool) status {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	var last status
	for {
		s, ok := n.status()
		if ok {
			last = s
			if cond(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("hil: %s: not %s after %v (last status %+v)", n.spec.name, what, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// dumpLogs prints the tail of the guest's syslog into the test log.
func (n *node) dumpLogs() {
	if n.pid == 0 {
		return
	}
	out, _, err := n.tryRun("logread | tail -60", 15*time.Second)
	if err != nil {
		n.t.Logf("hil: %s syslog: %v", n.spec.name, err)
		return
	}
	n.t.Logf("hil: %s syslog:\n%s", n.spec.name, out)
}
