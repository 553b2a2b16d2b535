package sdcard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ChangeStamp identifies the state of the device's content as far as the
// kernel tells writes apart: for an image file its inode, size and
// modification and change times (nanoseconds, as coarse as the file
// system's clock); for a block device the written and discarded sectors
// and requests the kernel counted for it since boot, with the boot's id.
// Any write to the device, through this process or not, changes it
// (for an image file: unless it falls in the same tick of the file
// system's clock as the last write the stamp saw).
func (d *Device) ChangeStamp() ([]byte, error) {
	fi, err := d.f.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("no file status")
	}
	le := binary.LittleEndian
	b := le.AppendUint64(nil, uint64(st.Dev))
	b = le.AppendUint64(b, st.Ino)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		b = le.AppendUint64(b, uint64(st.Size))
		b = le.AppendUint64(b, uint64(st.Mtim.Sec))
		b = le.AppendUint64(b, uint64(st.Mtim.Nsec))
		b = le.AppendUint64(b, uint64(st.Ctim.Sec))
		b = le.AppendUint64(b, uint64(st.Ctim.Nsec))
		return b, nil
	case syscall.S_IFBLK:
		stat, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
		if err != nil {
			return nil, err
		}
		f := strings.Fields(string(stat))
		if len(f) < 7 {
			return nil, errors.New("short block device statistics")
		}
		boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			return nil, err
		}
		b = append(b, boot...)
		// writes completed, merged, sectors; discards (from Linux 4.18)
		for _, i := range []int{4, 5, 6, 11, 12, 13} {
			if i < len(f) {
				b = append(b, f[i]...)
				b = append(b, ' ')
			}
		}
		return b, nil
	}
	return nil, errors.New("neither an image file nor a block device")
}
