package sdcard

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The ioctls from <linux/fs.h>: _IOWR('X', 119, int) and _IOWR('X', 120, int).
// golang.org/x/sys/unix does not define them.
const (
	fifreeze = 0xC0045877
	fithaw   = 0xC0045878
)

// Freeze suspends writes to the file system mounted at mount (FIFREEZE)
// and returns the function that thaws it (FITHAW). It needs
// CAP_SYS_ADMIN.
func Freeze(mount string) (thaw func() error, err error) {
	f, err := os.Open(mount)
	if err != nil {
		return nil, fmt.Errorf("sdcard: freeze %s: %w", mount, err)
	}
	if err := unix.IoctlSetInt(int(f.Fd()), fifreeze, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("sdcard: freeze %s: %w", mount, err)
	}
	return func() error {
		defer f.Close()
		if err := unix.IoctlSetInt(int(f.Fd()), fithaw, 0); err != nil {
			return fmt.Errorf("sdcard: thaw %s: %w", mount, err)
		}
		return nil
	}, nil
}
