package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and the path of its slave.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var n uint32
	err = control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		v, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		n = v
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

func termios(t *testing.T, path string) *unix.Termios {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tio *unix.Termios
	if err := control(f, func(fd int) error {
		var err error
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return tio
}

func TestOpenTTYRawAndRestored(t *testing.T) {
	_, slave := openPTY(t)
	before := termios(t, slave)
	if before.Lflag&unix.ICANON == 0 {
		t.Fatal("a new pty should start cooked")
	}
	tty, err := OpenTTY(slave)
	if err != nil {
		t.Fatal(err)
	}
	raw := termios(t, slave)
	if raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != 0 || raw.Oflag&unix.OPOST != 0 || raw.Iflag&unix.ICRNL != 0 {
		t.Errorf("not raw: lflag %#x oflag %#x iflag %#x", raw.Lflag, raw.Oflag, raw.Iflag)
	}
	if raw.Cflag&unix.CSIZE != unix.CS8 || raw.Cc[unix.VMIN] != 1 {
		t.Errorf("not 8 bits, byte by byte: cflag %#x vmin %d", raw.Cflag, raw.Cc[unix.VMIN])
	}
	if raw.Ispeed != before.Ispeed || raw.Ospeed != before.Ospeed || raw.Cflag&unix.CBAUD != before.Cflag&unix.CBAUD {
		t.Errorf("speed changed: %d/%d -> %d/%d", before.Ispeed, before.Ospeed, raw.Ispeed, raw.Ospeed)
	}
	if err := tty.Close(); err != nil {
		t.Fatal(err)
	}
	if after := termios(t, slave); after.Lflag != before.Lflag || after.Oflag != before.Oflag || after.Iflag != before.Iflag {
		t.Errorf("settings not restored: %+v, want %+v", after, before)
	}
}

func TestOpenTTYNotATerminal(t *testing.T) {
	f := t.TempDir() + "/plain"
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTTY(f); err == nil || !strings.Contains(err.Error(), "not a terminal") {
		t.Errorf("OpenTTY(plain file) = %v", err)
	}
}

// TestConsoleOverPTY runs the console on a real terminal in raw mode: Ctrl-C
// reaches the console as a byte (no SIGINT), and output has CR LF.
func TestConsoleOverPTY(t *testing.T) {
	master, slave := openPTY(t)
	tty, err := OpenTTY(slave)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, tty, func(ctx context.Context, args []string, out io.Writer) error {
			fmt.Fprintf(out, "role: primary (%s)\n", strings.Join(args, " "))
			return nil
		})
	}()
	if _, err := io.WriteString(master, "stat\x03status\r"); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	buf := make([]byte, 512)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got.String(), "role: primary (status)\r\n"+Prompt) {
		if time.Now().After(deadline) {
			t.Fatalf("screen %q", got.String())
		}
		_ = master.SetReadDeadline(time.Now().Add(time.Second))
		n, err := master.Read(buf)
		got.Write(buf[:n])
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
	}
	if !strings.Contains(got.String(), "stat^C\r\n") {
		t.Errorf("Ctrl-C not seen as a byte: %q", got.String())
	}
	if _, err := io.WriteString(master, "exit\r"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := tty.Close(); err != nil {
		t.Error(err)
	}
}
