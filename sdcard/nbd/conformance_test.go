package nbd

// Conformance against independent NBD clients from Debian: libnbd-bin
// (nbdinfo, nbdcopy), python3-libnbd (nbdsh), qemu-utils (qemu-io,
// qemu-img) and fio's nbd engine. Each test skips when its client is
// missing; test/deps.sh installs them.

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (test/deps.sh installs it): %v", name, err)
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir() // fio leaves verify state files in its working directory
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fileExport is an export backed by a file of random contents.
type fileExport struct {
	s    *Server
	file string // the backing file
	uri  string // nbd+unix:///?socket=...
	dir  string // scratch space for the test
}

func serveFile(t *testing.T, size int, o Options) *fileExport {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "export.img")
	if err := os.WriteFile(file, randomBytes(size, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(file, o.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, sock := startServer(t, b, o)
	return &fileExport{s: s, file: file, uri: "nbd+unix:///?socket=" + sock, dir: dir}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func (e *fileExport) backing(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(e.file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// saw logs what the server received and checks that the client sent at
// least the given commands.
func (e *fileExport) saw(t *testing.T, client string, want Stats) {
	t.Helper()
	got := e.s.Stats()
	t.Logf("%s: %+v", client, got)
	if got.Read < want.Read || got.Write < want.Write || got.Flush < want.Flush || got.Trim < want.Trim ||
		got.WriteZeroes < want.WriteZeroes || got.FUA < want.FUA || got.Errors < want.Errors {
		t.Errorf("%s sent %+v, want at least %+v", client, got, want)
	}
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("%s: first difference at byte %d: %#x, want %#x", what, i, got[i], want[i])
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestNbdinfo(t *testing.T) {
	needTool(t, "nbdinfo")
	e := serveFile(t, 4<<20, Options{Name: "data", Description: "datastore"})
	var info struct {
		Exports []struct {
			Name         string `json:"export-name"`
			Description  string `json:"description"`
			Size         int64  `json:"export-size"`
			ReadOnly     bool   `json:"is_read_only"`
			CanFlush     bool   `json:"can_flush"`
			CanFUA       bool   `json:"can_fua"`
			CanTrim      bool   `json:"can_trim"`
			CanZero      bool   `json:"can_zero"`
			CanMultiConn bool   `json:"can_multi_conn"`
			MinBlock     int    `json:"block_size_minimum"`
			PrefBlock    int    `json:"block_size_preferred"`
			MaxBlock     int    `json:"block_size_maximum"`
		} `json:"exports"`
	}
	out := runTool(t, "nbdinfo", "--json", "nbd+unix:///data?socket="+strings.TrimPrefix(e.uri, "nbd+unix:///?socket="))
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(info.Exports) != 1 {
		t.Fatalf("exports: %s", out)
	}
	x := info.Exports[0]
	if x.Size != 4<<20 || x.ReadOnly || !x.CanFlush || !x.CanFUA || !x.CanTrim || !x.CanZero || !x.CanMultiConn {
		t.Errorf("nbdinfo: %+v", x)
	}
	if x.MinBlock != 1 || x.PrefBlock != 4096 || x.MaxBlock != 1<<25 || x.Description != "datastore" {
		t.Errorf("block sizes or description: %+v", x)
	}
	// NBD_OPT_LIST, then INFO for each listed export.
	if out := runTool(t, "nbdinfo", "--list", e.uri); !strings.Contains(out, "export=\"data\"") && !strings.Contains(out, "export=data") {
		t.Errorf("nbdinfo --list does not name the export:\n%s", out)
	}
}

func TestNbdcopyRoundTrip(t *testing.T) {
	needTool(t, "nbdcopy")
	const size = 16 << 20
	e := serveFile(t, size, Options{})
	src := randomBytes(size, 2)
	clear(src[5<<20 : 9<<20]) // a zero run: nbdcopy may send it as WRITE_ZEROES
	srcFile := filepath.Join(e.dir, "src.img")
	if err := os.WriteFile(srcFile, src, 0o600); err != nil {
		t.Fatal(err)
	}
	// Several connections (the export allows multi-conn) and requests in flight.
	runTool(t, "nbdcopy", "--connections=4", "--requests=16", "--flush", srcFile, e.uri)
	mustEqual(t, "backing file after nbdcopy in", e.backing(t), src)
	e.saw(t, "nbdcopy in", Stats{Write: 1, Flush: 1})
	out := filepath.Join(e.dir, "out.img")
	runTool(t, "nbdcopy", e.uri, out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "nbdcopy out", got, src)
	e.saw(t, "nbdcopy in and out", Stats{Write: 1, Flush: 1, Read: 1})
}

const nbdshScript = `
import errno, nbd
size = h.get_size()
assert size == SIZE, size
assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero() and h.can_multi_conn()
assert not h.is_read_only()
h.set_strict_mode(0)  # let the server, not libnbd, judge bad requests

buf = bytes([0x5a]) * 65536
h.pwrite(buf, 0, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 0) == buf
h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE)  # count, offset
h.zero(4096, 16384)
h.trim(4096, 32768)
h.zero(4096, 40960, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(4096, 8192) == bytes(4096)
assert h.pread(4096, 16384) == bytes(4096)

def expect(want, f):
    try:
        f()
    except nbd.Error as e:
        assert e.errnum == want, (e, want)
        return
    raise AssertionError("no error, want errno %d" % want)

expect(errno.EINVAL, lambda: h.pread(512, size - 256))
expect(errno.ENOSPC, lambda: h.pwrite(b"x" * 512, size - 256))
expect(errno.ENOSPC, lambda: h.zero(4096, size))
expect(errno.EINVAL, lambda: h.trim(4096, size))

# Requests in flight at once, completed in whatever order.
cookies = [h.aio_pwrite(bytes([i]) * 4096, 65536 + i * 4096) for i in range(1, 33)]
assert h.aio_in_flight() > 1
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
for i in range(1, 33):
    assert h.pread(4096, 65536 + i * 4096) == bytes([i]) * 4096
h.flush()
print("nbdsh ok")
`

// nbdsh returns the command that runs nbdsh: nbdsh itself, or, when the
// python3 first in PATH lacks the nbd module (a pyenv, say), nbdsh with
// the system's python3 first in PATH.
func nbdsh(t *testing.T) []string {
	t.Helper()
	needTool(t, "nbdsh")
	path, _ := exec.LookPath("nbdsh")
	for _, argv := range [][]string{{path}, {"env", "PATH=/usr/bin:" + os.Getenv("PATH"), path}} {
		if exec.Command(argv[0], append(argv[1:], "--version")...).Run() == nil {
			return argv
		}
	}
	out, _ := exec.Command(path, "--version").CombinedOutput()
	t.Skipf("nbdsh does not run (python3-libnbd missing?): %s", out)
	return nil
}

func TestNbdsh(t *testing.T) {
	sh := nbdsh(t)
	const size = 1 << 20
	e := serveFile(t, size, Options{})
	script := strings.Replace(nbdshScript, "SIZE", strconv.Itoa(size), 1)
	if out := runTool(t, sh[0], append(sh[1:], "-u", e.uri, "-c", script)...); !strings.Contains(out, "nbdsh ok") {
		t.Fatalf("nbdsh: %s", out)
	}
	want := randomBytes(size, 1)
	copy(want, bytes.Repeat([]byte{0x5a}, 65536))
	clear(want[8192 : 8192+4096])
	clear(want[16384 : 16384+4096])
	clear(want[32768 : 32768+4096]) // the file backend punches a hole
	clear(want[40960 : 40960+4096])
	for i := 1; i <= 32; i++ {
		copy(want[65536+i*4096:], bytes.Repeat([]byte{byte(i)}, 4096))
	}
	mustEqual(t, "backing file after nbdsh", e.backing(t), want)
	e.saw(t, "nbdsh", Stats{Read: 3, Write: 33, Flush: 2, Trim: 1, WriteZeroes: 3, FUA: 2, Errors: 4})
}

func TestReadOnlyExportNbdsh(t *testing.T) {
	sh := nbdsh(t)
	e := serveFile(t, 1<<20, Options{ReadOnly: true})
	script := `
import errno, nbd
assert h.is_read_only()
h.set_strict_mode(0)
for f in (lambda: h.pwrite(b"x" * 512, 0), lambda: h.trim(512, 0), lambda: h.zero(512, 0)):
    try:
        f()
        raise AssertionError("write accepted")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
print("ro ok")
`
	if out := runTool(t, sh[0], append(sh[1:], "-u", e.uri, "-c", script)...); !strings.Contains(out, "ro ok") {
		t.Fatalf("nbdsh: %s", out)
	}
	mustEqual(t, "read-only backing file", e.backing(t), randomBytes(1<<20, 1))
	if st := e.s.Stats(); st.Errors != 3 || st.Write+st.Trim+st.WriteZeroes != 0 {
		t.Errorf("read-only export: %+v, want 3 errors and no writes", st)
	}
}

func TestQemuIO(t *testing.T) {
	needTool(t, "qemu-io")
	const size = 8 << 20
	e := serveFile(t, size, Options{})
	cmds := []string{
		"write -P 0xa1 0 1M",
		"write -f -P 0xa2 1M 64k", // FUA
		"write -z 2M 256k",        // WRITE_ZEROES with NO_HOLE
		"write -z -u 3M 256k",     // WRITE_ZEROES that may trim
		"discard 4M 512k",         // TRIM
		"aio_write -P 0xb1 5M 64k",
		"aio_write -P 0xb2 6M 64k",
		"aio_write -P 0xb3 7M 64k",
		"aio_flush",
		"flush",
		"read -P 0xa1 0 1M",
		"read -P 0xa2 1M 64k",
		"read -P 0 2M 256k",
		"read -P 0 3M 256k",
		"read -P 0xb2 6M 64k",
		"readv -P 0xb3 7M 32k 32k",
	}
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runTool(t, "qemu-io", append(args, e.uri)...)
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	want := randomBytes(size, 1)
	fill := func(off, n int, v byte) { copy(want[off:off+n], bytes.Repeat([]byte{v}, n)) }
	fill(0, 1<<20, 0xa1)
	fill(1<<20, 64<<10, 0xa2)
	fill(2<<20, 256<<10, 0)
	fill(3<<20, 256<<10, 0)
	fill(4<<20, 512<<10, 0) // the file backend punches a hole
	fill(5<<20, 64<<10, 0xb1)
	fill(6<<20, 64<<10, 0xb2)
	fill(7<<20, 64<<10, 0xb3)
	mustEqual(t, "backing file after qemu-io", e.backing(t), want)
	e.saw(t, "qemu-io", Stats{Read: 5, Write: 5, Flush: 1, Trim: 1, WriteZeroes: 1, FUA: 1})
}

func TestQemuImg(t *testing.T) {
	needTool(t, "qemu-img")
	const size = 8 << 20
	e := serveFile(t, size, Options{})
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	out := runTool(t, "qemu-img", "info", "--output=json", e.uri)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.VirtualSize != size {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	src := randomBytes(size, 3)
	clear(src[2<<20 : 3<<20])
	srcFile := filepath.Join(e.dir, "src.img")
	if err := os.WriteFile(srcFile, src, 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", "-W", srcFile, e.uri)
	mustEqual(t, "backing file after qemu-img convert", e.backing(t), src)
	runTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", srcFile, e.uri)
	e.saw(t, "qemu-img", Stats{Read: 1, Write: 1})
	// Written by qemu-img, read back by another client.
	if _, err := exec.LookPath("nbdcopy"); err == nil {
		got := filepath.Join(e.dir, "got.img")
		runTool(t, "nbdcopy", e.uri, got)
		b, err := os.ReadFile(got)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "nbdcopy of what qemu-img wrote", b, src)
	}
}

func TestFio(t *testing.T) {
	needTool(t, "fio")
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); !bytes.Contains(out, []byte("nbd")) {
		t.Skip("this fio has no nbd engine")
	}
	const size = 16 << 20
	e := serveFile(t, size, Options{})
	common := []string{"--ioengine=nbd", "--uri=" + e.uri, "--size=" + strconv.Itoa(size),
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--output-format=terse"}
	// Random 4 KiB writes at queue depth 16 with a flush every 32, verified.
	runTool(t, "fio", append([]string{"--name=randwrite", "--rw=randwrite", "--bs=4k", "--iodepth=16", "--fsync=32", "--randrepeat=0"}, common...)...)
	// Sequential 1 MiB writes, verified, then trims.
	runTool(t, "fio", append([]string{"--name=seq", "--rw=write", "--bs=1M", "--iodepth=4"}, common...)...)
	runTool(t, "fio", "--name=trim", "--ioengine=nbd", "--uri="+e.uri, "--size=1M", "--rw=trim", "--bs=64k", "--iodepth=4")
	e.saw(t, "fio", Stats{Read: 1, Write: 1, Flush: 1, Trim: 1})
	// What fio wrote, read back by another client, equals the backing file.
	if _, err := exec.LookPath("nbdcopy"); err == nil {
		got := filepath.Join(e.dir, "got.img")
		runTool(t, "nbdcopy", e.uri, got)
		b, err := os.ReadFile(got)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "nbdcopy of what fio wrote vs backing file", b, e.backing(t))
		if bytes.Equal(b[1<<20:], randomBytes(size, 1)[1<<20:]) {
			t.Fatal("fio wrote nothing")
		}
	}
}

// With a 4 KiB minimum block size the clients learn the constraint in the
// handshake and do unaligned writes as read-modify-write themselves.
func TestMinBlockSizeQemuIO(t *testing.T) {
	needTool(t, "qemu-io")
	const size = 1 << 20
	e := serveFile(t, size, Options{MinBlock: 4096})
	out := runTool(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 100 10", "-c", "read -P 0x11 100 10", e.uri)
	if strings.Contains(out, "failed") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	want := randomBytes(size, 1)
	copy(want[100:110], bytes.Repeat([]byte{0x11}, 10))
	mustEqual(t, "backing file after an unaligned write", e.backing(t), want)
	if _, err := exec.LookPath("nbdinfo"); err == nil {
		if out := runTool(t, "nbdinfo", e.uri); !strings.Contains(out, "block_size_minimum: 4096") {
			t.Errorf("nbdinfo does not show the minimum block size:\n%s", out)
		}
	}
}
