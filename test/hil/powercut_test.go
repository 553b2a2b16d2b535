package hil

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The spare's SD card for the power-cut scenario: an MBR with the
// datastore in partition 1 (16 MiB, the main's datastore size) and the
// state directory (ext4: metadata, journal, epoch) in partition 2, so that
// a power cut hits both, as on a real card.
const (
	pcCardSize  = 32 << 20
	pcDataStart = 1 << 20
	pcDataSize  = sdSize
	pcStateSize = pcCardSize - pcDataStart - pcDataSize
)

// pcModules are loaded, in order, to mount the state partition; they ride
// on the per-board drive (the image ships without ext4).
var pcModules = []string{"crypto/crc32c_generic.ko", "lib/crc16.ko", "fs/mbcache.ko", "fs/jbd2/jbd2.ko", "fs/ext4/ext4.ko"}

// makeCard writes the partitioned card image.
func makeCard(t *testing.T, path string) {
	t.Helper()
	state := path + ".state"
	if err := os.WriteFile(state, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(state, pcStateSize); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "1024", "-L", "pgstate", state).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	fs, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(state)
	card := make([]byte, pcCardSize)
	entry := func(i int, start, size uint32) {
		e := card[446+16*i:]
		e[1], e[2], e[3] = 0xfe, 0xff, 0xff // CHS unused
		e[4] = 0x83
		e[5], e[6], e[7] = 0xfe, 0xff, 0xff
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], size)
	}
	entry(0, pcDataStart/512, pcDataSize/512)
	entry(1, (pcDataStart+pcDataSize)/512, pcStateSize/512)
	card[510], card[511] = 0x55, 0xaa
	copy(card[pcDataStart+pcDataSize:], fs)
	if err := os.WriteFile(path, card, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pcDefaults is /etc/default/pairguard, sourced by the init script before
// the daemon starts: it mounts the state partition once.
func pcDefaults() string {
	var b strings.Builder
	b.WriteString("if ! grep -q ' /var/lib/pairguard ' /proc/mounts; then\n")
	for _, m := range pcModules {
		fmt.Fprintf(&b, "\tinsmod /etc/hil/%s 2>/dev/null\n", filepath.Base(m))
	}
	b.WriteString("\ti=0; while [ ! -b /dev/mmcblk0p2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n")
	b.WriteString("\tmkdir -p /var/lib/pairguard\n")
	b.WriteString("\tmount -t ext4 /dev/mmcblk0p2 /var/lib/pairguard && echo 'hil-powercut: state mounted' > /dev/console\n")
	b.WriteString("fi\n")
	return b.String()
}

type pcStatus struct {
	Role string `json:"role"`
	Data struct {
		State      string `json:"state"`
		Generation string `json:"generation"`
	} `json:"data"`
	Mirror struct {
		State string `json:"state"`
	} `json:"mirror"`
}

func (n *node) pcStatus() (pcStatus, bool) {
	out, code, err := n.tryRun("pairguard status --json", 20*time.Second)
	var s pcStatus
	if err != nil || code != 0 {
		return s, false
	}
	i := strings.Index(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &s) != nil {
		return s, false
	}
	return s, true
}

func (n *node) hashDevice(dev string) string {
	n.t.Helper()
	out, code := n.run("sha256sum "+dev, 120*time.Second)
	if code != 0 || len(strings.Fields(out)) == 0 {
		n.t.Fatalf("%s: sha256sum %s: %q", n.spec.name, dev, out)
	}
	return strings.Fields(out)[0]
}

// blockMirror drops the mirror's TCP (port 7788) to and from a board's
// LAN 2 port at the switch, with an nft bridge table; heartbeats pass.
func blockMirror(t *testing.T, port string, block bool) {
	t.Helper()
	if !block {
		inNS(t, nsSwitch, "nft", "delete", "table", "bridge", "pgmirror")
		return
	}
	rules := "table bridge pgmirror {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n" +
		"  oifname \"" + port + "\" tcp dport 7788 drop\n  iifname \"" + port + "\" tcp sport 7788 drop\n }\n}\n"
	rf := filepath.Join(t.TempDir(), "pgmirror.nft")
	if err := os.WriteFile(rf, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	inNS(t, nsSwitch, "nft", "-f", rf)
}

// TestPowerCutSpare cuts the spare's power (SIGKILL of its QEMU: the
// guest's page cache is lost, what it wrote to the card is kept) at random
// moments of resync rounds, reboots it with the mirror's TCP blocked at the switch, and checks
// what its daemon recovered: the datastore is one of the main's complete
// versions with data up-to-date or outdated, or the data is inconsistent;
// never a mix reported usable. Then the mirror is let through again, the spare
// resyncs, and the next round is cut. `make hil-powercut` runs it
// (PAIRGUARD_HIL_POWERCUTS, default 30).
func TestPowerCutSpare(t *testing.T) {
	if os.Getenv("PAIRGUARD_HIL_POWERCUT") == "" {
		t.Skip("hil: long power-cut scenario; `make hil-powercut` runs it (PAIRGUARD_HIL_POWERCUT=1)")
	}
	cuts := 30
	if v, err := strconv.Atoi(os.Getenv("PAIRGUARD_HIL_POWERCUTS")); err == nil && v > 0 {
		cuts = v
	}
	p := newPair(t)
	kver, err := os.ReadFile(filepath.Join(p.img.dir, "kernel-version"))
	if err != nil {
		t.Fatal(err)
	}
	modDir := filepath.Join(filepath.Dir(p.img.dir), "x", "k", "lib", "modules", strings.TrimSpace(string(kver)), "kernel")
	files := map[string]string{"etc/default/pairguard": pcDefaults()}
	for _, m := range pcModules {
		b, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			t.Fatal(err)
		}
		files["etc/hil/"+filepath.Base(m)] = string(b)
	}
	// No periodic round: one that ran while the test writes a new version
	// would hand the spare a live snapshot that is no version of the
	// main's, and the check could not tell it from a torn image. Rounds
	// come from reconnections and `pairguard sync` only.
	ds := "mode = \"periodic\"\ninterval = \"24h\""
	ms, ss := mainSpec, spareSpec
	ms.datastore, ss.datastore = ds, ds
	fill := make([]byte, 6<<20)
	rand.Read(fill)
	ms.sdFill = fill
	card := filepath.Join(p.dir, "spare-card.img")
	makeCard(t, card)
	ss.sdImage = card
	ss.files = files
	cfg := ss.config(p.img.board)
	cfg = strings.Replace(cfg, fmt.Sprintf("device = %q", p.img.board.Datastore), `device = "/dev/mmcblk0p1"`, 1)
	files["etc/pairguard/pairguard.toml"] = cfg

	n := p.boot(ms, ss)
	m, s := n[0], n[1]
	m.waitStatus("primary", 90*time.Second, func(st status) bool { return st.Role == "primary" })
	if !strings.Contains(s.consoleLog(), "hil-powercut: state mounted") {
		t.Fatalf("the spare's state partition is not mounted:\n%s", s.consoleLog())
	}
	versions := map[string]int{m.hashDevice("/dev/mmcblk0"): 0}
	inSync := func(s *node, limit time.Duration) time.Duration {
		t0 := time.Now()
		s.waitStatus("in sync and up-to-date", limit, func(st status) bool {
			return st.Mirror.State == "in-sync" && st.Data.State == "up-to-date"
		})
		return time.Since(t0)
	}
	t.Logf("hil-powercut: initial sync done in %v", inSync(s, 300*time.Second).Round(time.Second))

	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 9))
	counts := map[string]int{}
	for i := 1; i <= cuts; i++ {
		// A new version on the main: 2 to 6 MiB of new data at a random place.
		count := 32 + r.IntN(64)
		seek := r.IntN(pcDataSize/65536 - count)
		m.run(fmt.Sprintf("dd if=/dev/urandom of=/dev/mmcblk0 bs=65536 seek=%d count=%d 2>/dev/null; sync", seek, count), 120*time.Second)
		prev := len(versions) - 1
		versions[m.hashDevice("/dev/mmcblk0")] = i
		m.run("pairguard sync", 30*time.Second)
		// The cut falls anywhere in the round that follows: its sum scan,
		// its data, its commit and apply. Such a round took 1.2 to 1.5 s
		// under TCG (the main's log, 2026-12-05); PAIRGUARD_HIL_CUT_WINDOW
		// widens or narrows the window.
		window := 1500 * time.Millisecond
		if w, err := time.ParseDuration(os.Getenv("PAIRGUARD_HIL_CUT_WINDOW")); err == nil && w > 0 {
			window = w
		}
		delay := time.Duration(r.Float64() * float64(window))
		time.Sleep(delay)
		s.powerOff()
		// Reboot with the mirror's TCP blocked at the switch (heartbeats
		// pass): the daemon recovers alone, before any round.
		blockMirror(t, ss.tap(2), true)
		os.Remove(s.path("con.log")) // the new boot's console starts empty
		s = p.boot(ss)[0]
		var st pcStatus
		deadline := time.Now().Add(60 * time.Second)
		for {
			var ok bool
			if st, ok = s.pcStatus(); ok && st.Data.State != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cut %d: the rebooted spare's daemon does not answer", i)
			}
			time.Sleep(time.Second)
		}
		got := s.hashDevice("/dev/mmcblk0p1")
		v, known := versions[got]
		outcome := ""
		switch {
		case st.Data.State == "inconsistent":
			outcome = "inconsistent"
		case !known:
			outcome = "torn"
			t.Errorf("cut %d (%v into the round): the spare's datastore is no version of the main's, data %s", i, delay.Round(time.Millisecond), st.Data.State)
		case v == i:
			outcome = "new"
		case v == prev:
			outcome = "old"
		default:
			outcome = fmt.Sprintf("older(%d)", v)
		}
		counts[outcome]++
		t.Logf("hil-powercut: cut %d at %v: data %s, datastore %s", i, delay.Round(time.Millisecond), st.Data.State, outcome)
		blockMirror(t, ss.tap(2), false)
		inSync(s, 300*time.Second)
		if h := s.hashDevice("/dev/mmcblk0p1"); h != m.hashDevice("/dev/mmcblk0") {
			t.Fatalf("cut %d: after the resync the spare differs from the main", i)
		}
	}
	t.Logf("hil-powercut: %d power cuts of the spare during resync rounds: %d new version, %d old version, %d inconsistent, %d torn (other: %v)",
		cuts, counts["new"], counts["old"], counts["inconsistent"], counts["torn"], counts)
}
