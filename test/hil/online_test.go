package hil

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The online datastore of the pair: every write reaches the SD card through
// the primary's NBD export, attached to the kernel's /dev/nbd0, and is
// replicated synchronously to the peer.
const (
	onlineDatastore = "mode = \"online\"\nreplication = \"sync\"\nnbd-device = \"/dev/nbd0\""
	nbdDev          = "/dev/nbd0"
	mnt             = "/mnt"
)

// ext4Modules mount the filesystem (ext2 made by BusyBox's mke2fs, mounted
// by the ext4 driver); the image ships them, /init does not load them.
var ext4Modules = []string{"crypto/crc32c_generic.ko", "lib/crc16.ko", "fs/mbcache.ko", "fs/jbd2/jbd2.ko", "fs/ext4/ext4.ko"}

// automount, when it exists on a board, has the hook mount /dev/nbd0 on
// /mnt at to-primary (a scenario creates it once the filesystem is made).
const automount = "/tmp/hil-automount"

// attachHook is the boards' hook, as an appliance's would be:
// to-primary logs whether /dev/nbd0 is attached when it runs (the daemon
// attaches the export before the hook) and, once the scenario made the
// filesystem (automount), mounts it on /mnt; to-secondary unmounts /mnt
// before the export goes, and fails if it cannot.
var attachHook = `#!/bin/sh
case "$1" in
to-primary)
	if [ -e /sys/block/nbd0/pid ]; then
		logger -t hil-hook "to-primary: nbd0 attached"
	else
		logger -t hil-hook "to-primary: nbd0 NOT attached"
	fi
	[ -e ` + automount + ` ] || exit 0
	grep -q ext4 /proc/filesystems || { k=/lib/modules/$(uname -r)/kernel` + insmodAll() + `; }
	if mount -t ext4 /dev/nbd0 /mnt; then
		logger -t hil-hook "to-primary: mounted"
	else
		logger -t hil-hook "to-primary: mount failed"
		exit 1
	fi ;;
to-secondary)
	if grep -q ' /mnt ' /proc/mounts; then
		if umount /mnt; then
			logger -t hil-hook "to-secondary: unmounted"
		else
			logger -t hil-hook "to-secondary: umount failed"
			exit 1
		fi
	fi ;;
esac
exit 0
`

// insmodAll is the shell that loads ext4Modules from $k, each after the
// one before it.
func insmodAll() string {
	var b strings.Builder
	for _, m := range ext4Modules {
		fmt.Fprintf(&b, " && insmod $k/%s", m)
	}
	return b.String()
}

func onlineSpecs() (spec, spec) {
	ms, ss := mainSpec, spareSpec
	ms.datastore, ss.datastore = onlineDatastore, onlineDatastore
	hooks := map[string]string{"etc/pairguard/hooks.d/60-hil-nbd": attachHook}
	ms.files, ss.files = hooks, hooks
	return ms, ss
}

// checkAttachHook fails the test unless every to-primary hook of the board
// found /dev/nbd0 attached, and at least one ran.
func (n *node) checkAttachHook() {
	n.t.Helper()
	out, _ := n.run("logread | grep hil-hook", 10*time.Second)
	if !strings.Contains(out, "to-primary: nbd0 attached") || strings.Contains(out, "NOT attached") {
		n.t.Errorf("%s: the to-primary hook did not find %s attached: %q", n.spec.name, nbdDev, out)
	}
}

// must runs cmd on the board's console and fails the test unless it exits 0.
func (n *node) must(cmd string, timeout time.Duration) string {
	n.t.Helper()
	out, code := n.run(cmd, timeout)
	if code != 0 {
		n.t.Fatalf("%s: %q exited %d: %s", n.spec.name, cmd, code, out)
	}
	return out
}

// loadExt4 loads the ext4 driver and what it needs, once.
func (n *node) loadExt4() {
	n.t.Helper()
	n.must("grep -q ext4 /proc/filesystems || { k=/lib/modules/$(uname -r)/kernel"+insmodAll()+"; }", 60*time.Second)
}

// waitAttached waits until /dev/nbd0 is connected (the kernel shows the
// serving process in sysfs) with the datastore's size.
func (n *node) waitAttached(timeout time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, code, err := n.tryRun("cat /sys/block/nbd0/pid /sys/block/nbd0/size", 20*time.Second)
		if err == nil && code == 0 {
			f := strings.Fields(out)
			if len(f) == 2 && f[1] == fmt.Sprint(sdSize/512) {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: %s not attached after %v (%q, exit %d, %v)", n.spec.name, nbdDev, timeout, out, code, err)
		}
		time.Sleep(time.Second)
	}
}

// writeFiles writes count files of random data into dir, fsyncs each and
// then the directory, and returns their sums (path -> sha256). BusyBox's
// `sync FILE...` is fsync(2) of each file (Debian's BusyBox has no fsync
// applet).
func (n *node) writeFiles(dir, prefix string, count int) map[string]string {
	n.t.Helper()
	cmd := fmt.Sprintf("for i in $(seq 1 %d); do f=%s/%s$i; dd if=/dev/urandom of=$f bs=1024 count=$((i * 97)) 2>/dev/null && sync $f || exit 1; done; sync %s",
		count, dir, prefix, dir)
	n.must("("+cmd+")", 120*time.Second)
	return n.sums(dir + "/" + prefix + "*")
}

// sums returns the sha256 of the files matching glob (path -> sum).
func (n *node) sums(glob string) map[string]string {
	n.t.Helper()
	out := n.must("sha256sum "+glob, 120*time.Second)
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			sums[f[1]] = f[0]
		}
	}
	return sums
}

// checkSums compares the files' sums with want and reports every difference.
func checkSums(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for f, sum := range want {
		switch g, ok := got[f]; {
		case !ok:
			t.Errorf("%s: %s is missing", what, f)
		case g != sum:
			t.Errorf("%s: %s differs (sha256 %s, written %s)", what, f, g, sum)
		}
	}
}

// noIOErrors fails the test if the kernel logged an I/O error.
func (n *node) noIOErrors() {
	n.t.Helper()
	if out, code := n.run("dmesg | grep -i -e 'I/O error' -e 'EXT4-fs error' -e 'Buffer I/O'", 30*time.Second); code == 0 {
		n.t.Errorf("%s: the kernel logged I/O errors:\n%s", n.spec.name, out)
	}
}

// TestOnlineFilesystem: with the datastore online and replicated
// synchronously, the main makes a filesystem on /dev/nbd0 (its NBD export,
// attached through generic netlink), writes files and fsyncs them, and loses
// power at once; the spare takes over, attaches /dev/nbd0 before its
// to-primary hook, mounts it, and every fsynced file is intact.
func TestOnlineFilesystem(t *testing.T) {
	t0 := time.Now()
	p := newPair(t)
	ms, ss := onlineSpecs()
	n := p.boot(ms, ss)
	m, s := n[0], n[1]
	m.waitStatus("primary and in sync", 120*time.Second, func(st status) bool {
		return st.Role == "primary" && st.Peer.State == "up" && st.Mirror.State == "in-sync"
	})
	t.Logf("hil: online pair in sync %.1fs after launch", time.Since(m.booted).Seconds())
	m.waitAttached(30 * time.Second)
	m.checkAttachHook()
	if out := m.must("cat /sys/block/nbd0/backend", 10*time.Second); strings.TrimSpace(out) != "pairguard" {
		t.Errorf("main: /dev/nbd0's backend is %q, want pairguard", out)
	}
	// The secondary's copy is never exported.
	if out, code := s.run("cat /sys/block/nbd0/pid", 10*time.Second); code == 0 {
		t.Errorf("spare: /dev/nbd0 is attached on the secondary (pid %s)", strings.TrimSpace(out))
	}
	m.loadExt4()
	m.must("mke2fs -F -b 4096 "+nbdDev+" >/dev/null", 120*time.Second)
	m.must("mkdir -p "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	want := m.writeFiles(mnt, "f", 6)
	if len(want) != 6 {
		t.Fatalf("main: wrote %d files, want 6: %v", len(want), want)
	}
	cut := m.powerOff()
	t.Logf("hil: main's power cut %.1fs after launch, its %d files fsynced", cut.Sub(m.booted).Seconds(), len(want))

	s.waitStatus("primary", 60*time.Second, func(st status) bool { return st.Role == "primary" })
	s.waitAttached(30 * time.Second)
	t.Logf("hil: spare primary with %s attached %.1fs after the cut", nbdDev, time.Since(cut).Seconds())
	s.checkAttachHook()
	s.loadExt4()
	s.must("mkdir -p "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	checkSums(t, "spare after the main's power cut", want, s.sums(mnt+"/f*"))
	s.noIOErrors()
	t.Logf("hil: TestOnlineFilesystem took %.1fs", time.Since(t0).Seconds())
}

// TestOnlineDaemonRestart: the main, primary alone, serves an ext2
// filesystem mounted on /dev/nbd0; its daemon is killed (SIGKILL) and
// respawned by the init script's supervisor. A file written and fsynced
// while no daemon serves the device stalls instead of failing, and
// completes once the new daemon, primary again, hands the kernel new
// connections (RECONFIGURE, not CONNECT). Every file written before,
// during and after the restart reads back intact after a remount, and the
// kernel logged no I/O error.
func TestOnlineDaemonRestart(t *testing.T) {
	t0 := time.Now()
	p := newPair(t)
	ms, _ := onlineSpecs()
	m := p.boot(ms)[0]
	m.waitStatus("primary alone", 120*time.Second, func(st status) bool { return st.Role == "primary" })
	m.waitAttached(30 * time.Second)
	m.loadExt4()
	m.must("mke2fs -F -b 4096 "+nbdDev+" >/dev/null", 120*time.Second)
	m.must("mkdir -p "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	want := m.writeFiles(mnt, "before", 3)
	// The serving daemon, as the status socket names it, marked itself.
	out := m.must("logread | grep -e 'I/O flusher' -e 'memory is locked'; grep VmLck /proc/$(cat /var/run/pairguard.pid)/status", 30*time.Second)
	if !strings.Contains(out, "I/O flusher") || !strings.Contains(out, "memory is locked") || strings.Contains(out, "VmLck:\t       0 kB") {
		t.Errorf("main: the daemon serving %s is not an I/O flusher with its memory locked:\n%s", nbdDev, out)
	}
	m.must("dd if=/dev/urandom of=/tmp/during bs=1024 count=300 2>/dev/null", 60*time.Second)
	during := m.sums("/tmp/during")["/tmp/during"]

	pid := strings.TrimSpace(m.must("cat /var/run/pairguard.pid", 10*time.Second))
	m.must("kill -9 "+pid, 10*time.Second)
	killed := time.Now()
	// Written and fsynced with no daemon: it waits for the next one.
	m.must("(cp /tmp/during "+mnt+"/during && sync "+mnt+"/during && sync "+mnt+" && echo ok >/tmp/during.done || echo failed >/tmp/during.done) & true", 10*time.Second)
	time.Sleep(2 * time.Second)
	if out, code := m.run("cat /tmp/during.done", 10*time.Second); code == 0 {
		t.Fatalf("main: a write with no daemon finished (%s) before the daemon came back", strings.TrimSpace(out))
	}
	m.waitStatus("primary again", 120*time.Second, func(st status) bool { return st.Role == "primary" })
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, code := m.run("cat /tmp/during.done", 10*time.Second)
		if code == 0 {
			if strings.TrimSpace(out) != "ok" {
				t.Fatalf("main: the write made during the restart failed")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("main: the write made during the restart never finished")
		}
		time.Sleep(time.Second)
	}
	t.Logf("hil: the write made while the daemon was down finished %.1fs after the kill", time.Since(killed).Seconds())
	if newPid := strings.TrimSpace(m.must("cat /var/run/pairguard.pid", 10*time.Second)); newPid == pid {
		t.Errorf("main: the daemon's pid is still %s", pid)
	}
	if out, code := m.run("logread | grep 'reconfigured with new connections'", 10*time.Second); code != 0 {
		t.Errorf("main: the new daemon did not reconfigure %s: %s", nbdDev, out)
	}
	m.checkAttachHook() // both runs' to-primary hooks
	want[mnt+"/during"] = during
	for f, sum := range m.writeFiles(mnt, "after", 3) {
		want[f] = sum
	}
	// Read everything back from the device, not the page cache.
	m.must("umount "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	checkSums(t, "main after the daemon's restart", want, m.sums(mnt+"/before* "+mnt+"/during "+mnt+"/after*"))
	m.noIOErrors()
	t.Logf("hil: TestOnlineDaemonRestart took %.1fs", time.Since(t0).Seconds())
}

// TestOnlineGracefulRestart: the main, primary alone, serves an ext2
// filesystem on /dev/nbd0 that its to-primary hook mounts; files are
// written and fsynced; `/etc/init.d/S60pairguard restart` stops the daemon
// with SIGTERM. With no peer to take over, the daemon steps down in order:
// its to-secondary hook unmounts the filesystem while the export still
// serves it, then the device is disconnected. The new daemon becomes
// primary, attaches /dev/nbd0 afresh (CONNECT, nothing left to
// reconfigure), its to-primary hook mounts the filesystem again, every file
// is intact, and the kernel logged no I/O error.
func TestOnlineGracefulRestart(t *testing.T) {
	t0 := time.Now()
	p := newPair(t)
	ms, _ := onlineSpecs()
	m := p.boot(ms)[0]
	m.waitStatus("primary alone", 120*time.Second, func(st status) bool { return st.Role == "primary" })
	m.waitAttached(30 * time.Second)
	m.loadExt4()
	m.must("mke2fs -F -b 4096 "+nbdDev+" >/dev/null", 120*time.Second)
	// From now on the hook mounts the filesystem; this once, the test does.
	m.must("touch "+automount+" && mkdir -p "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	want := m.writeFiles(mnt, "g", 5)
	if len(want) != 5 {
		t.Fatalf("main: wrote %d files, want 5: %v", len(want), want)
	}
	pid := strings.TrimSpace(m.must("cat /var/run/pairguard.pid", 10*time.Second))

	restarted := time.Now()
	out := m.must("/etc/init.d/S60pairguard restart", 120*time.Second)
	t.Logf("hil: the init script's restart took %.1fs", time.Since(restarted).Seconds())
	// (Kernel messages may land between "Stopping pairguard: " and "OK".)
	if strings.Contains(out, "killed") || strings.Contains(out, "FAIL") || !strings.Contains(out, "Starting pairguard: OK") {
		t.Errorf("main: the restart did not stop and start the daemon cleanly: %q", out)
	}
	m.waitStatus("primary again", 120*time.Second, func(st status) bool { return st.Role == "primary" })
	if newPid := strings.TrimSpace(m.must("cat /var/run/pairguard.pid", 10*time.Second)); newPid == pid {
		t.Errorf("main: the daemon's pid is still %s", pid)
	}
	m.waitAttached(30 * time.Second)
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _ := m.run("logread | grep hil-hook", 10*time.Second)
		if strings.Contains(out, "to-primary: mounted") {
			break
		}
		if strings.Contains(out, "mount failed") || time.Now().After(deadline) {
			t.Fatalf("main: the new daemon's to-primary hook did not mount %s: %q", nbdDev, out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("hil: primary again with the filesystem mounted by its hook %.1fs after the restart began", time.Since(restarted).Seconds())

	syslog := m.must("logread", 30*time.Second)
	if !strings.Contains(syslog, "to-secondary: unmounted") || strings.Contains(syslog, "umount failed") {
		t.Errorf("main: the to-secondary hook did not unmount %s:\n%s", mnt, grepLines(syslog, "hil-hook"))
	}
	// The old daemon waited for its hook: no give-up, and the device was
	// disconnected after the unmount, so the new one had nothing to
	// reconfigure.
	for _, bad := range []string{"did not finish in time", "reconfigured with new connections", "hook failed"} {
		if strings.Contains(syslog, bad) {
			t.Errorf("main: the syslog says %q:\n%s", bad, grepLines(syslog, bad))
		}
	}
	book := m.must("pairguard log -n 200", 30*time.Second)
	if !strings.Contains(book, "the daemon is stopping and the peer cannot take over") {
		t.Errorf("main: no step-down at the stop in the logbook:\n%s", book)
	}
	if !strings.Contains(book, "60-hil-nbd to-secondary") || strings.Contains(book, "hook-failed") {
		t.Errorf("main: the to-secondary hook is not in the logbook as a success:\n%s", book)
	}
	// The hook finished before the node let go of the address and the
	// export.
	if h, r := strings.Index(book, "60-hil-nbd to-secondary"), strings.Index(book, "released the service address: the daemon is stopping"); h < 0 || r < h {
		t.Errorf("main: the step-down did not wait for the to-secondary hook:\n%s", book)
	}
	t.Logf("hil: main's hooks and step-down:\n%s%s", grepLines(syslog, "hil-hook"), grepLines(book, "stopping"))
	m.checkAttachHook()

	// Read back from the device, not from a cache the restart left.
	m.must("grep -q ' "+mnt+" ' /proc/mounts && echo 3 >/proc/sys/vm/drop_caches", 30*time.Second)
	checkSums(t, "main after a graceful restart", want, m.sums(mnt+"/g*"))
	for f, sum := range m.writeFiles(mnt, "h", 2) {
		want[f] = sum
	}
	m.must("umount "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	checkSums(t, "main after a remount", want, m.sums(mnt+"/g* "+mnt+"/h*"))
	m.noIOErrors()
	t.Logf("hil: TestOnlineGracefulRestart took %.1fs", time.Since(t0).Seconds())
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestOnlineSwap: a planned handover of the online datastore. The main
// writes files (not fsynced) on its mounted /dev/nbd0; `pairguard swap`
// runs its to-secondary hook, which unmounts, drains the stream, and
// DISCONNECTs the device; the spare, primary, attaches its /dev/nbd0 and
// mounts it with every file intact.
func TestOnlineSwap(t *testing.T) {
	t0 := time.Now()
	p := newPair(t)
	ms, ss := onlineSpecs()
	n := p.boot(ms, ss)
	m, s := n[0], n[1]
	m.waitStatus("primary and in sync", 120*time.Second, func(st status) bool {
		return st.Role == "primary" && st.Peer.State == "up" && st.Mirror.State == "in-sync"
	})
	m.waitAttached(30 * time.Second)
	m.loadExt4()
	m.must("mke2fs -F -b 4096 "+nbdDev+" >/dev/null", 120*time.Second)
	m.must("mkdir -p "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	m.must("for i in 1 2 3 4; do dd if=/dev/urandom of="+mnt+"/s$i bs=1024 count=$((i * 113)) 2>/dev/null || exit 1; done", 120*time.Second)
	want := m.sums(mnt + "/s*")
	m.must("pairguard swap", 60*time.Second)
	s.waitStatus("primary", 60*time.Second, func(st status) bool { return st.Role == "primary" })
	m.waitStatus("secondary", 30*time.Second, func(st status) bool { return st.Role == "secondary" })
	s.waitAttached(30 * time.Second)
	if out, _ := m.run("logread | grep hil-hook", 10*time.Second); !strings.Contains(out, "to-secondary: unmounted") {
		t.Errorf("main: the to-secondary hook did not unmount: %q", out)
	}
	if out, code := m.run("cat /sys/block/nbd0/pid", 10*time.Second); code == 0 {
		t.Errorf("main: /dev/nbd0 still attached on the secondary (pid %s)", strings.TrimSpace(out))
	}
	s.checkAttachHook()
	s.loadExt4()
	s.must("mkdir -p "+mnt+" && mount -t ext4 "+nbdDev+" "+mnt, 60*time.Second)
	checkSums(t, "spare after the swap", want, s.sums(mnt+"/s*"))
	m.noIOErrors()
	s.noIOErrors()
	t.Logf("hil: TestOnlineSwap took %.1fs", time.Since(t0).Seconds())
}
