package sdcard

import (
	"fmt"
	"testing"
)

// BenchmarkHash compares the two block hashes on 64 KiB blocks and 4 KiB
// sub-blocks; its figures chose HashXXH3 as the default (see HashXXH3).
// On a board: GOARCH=arm64 go test -c ./sdcard, then
// ./sdcard.test -test.run XXX -test.bench Hash.
func BenchmarkHash(b *testing.B) {
	for _, size := range []int{FineSize, DefaultBlockSize} {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for _, h := range []HashKind{HashXXH3, HashBLAKE3} {
			b.Run(fmt.Sprintf("%v/%dKiB", h, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					h.Sum(buf)
				}
			})
		}
	}
}

func TestHashKindsDiffer(t *testing.T) {
	a, b := make([]byte, 4096), make([]byte, 4096)
	b[4095] = 1
	for _, h := range []HashKind{HashXXH3, HashBLAKE3} {
		if h.Sum(a) == h.Sum(b) || h.Sum(a) != h.Sum(make([]byte, 4096)) {
			t.Errorf("%v is not a function of the content", h)
		}
	}
	if HashXXH3.Sum(a) == HashBLAKE3.Sum(a) {
		t.Error("the two hashes agree")
	}
}
