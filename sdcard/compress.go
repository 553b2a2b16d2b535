package sdcard

import (
	"fmt"
	"math/bits"

	"github.com/klauspost/compress/zstd"
)

// Compression says whether a node compresses the data records it sends.
type Compression uint8

const (
	compressionInvalid Compression = iota
	// CompressionOff sends data records as they are (the default).
	CompressionOff
	// CompressionZstd compresses each data record with zstd when the peer
	// can read compressed records (it negotiated alpnCompressed) and the
	// record shrinks; for slow failover lines (100 Mbit).
	CompressionZstd
)

var compressionNames = [...]string{"invalid", "off", "zstd"}

func (c Compression) String() string {
	if int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("invalid(%d)", uint8(c))
}

// ParseCompression returns the compression for the config value of
// [datastore] compression.
func ParseCompression(s string) (Compression, error) {
	for i, n := range compressionNames {
		if i > 0 && n == s {
			return Compression(i), nil
		}
	}
	return 0, fmt.Errorf("sdcard: compression: unknown value %q (off or zstd)", s)
}

// DefaultZstdLevel is the zstd level of CompressionZstd, chosen with
// test/bench/mirror on a mixed image at 100 Mbit (see its README).
const DefaultZstdLevel = zstd.SpeedDefault

// alpnCompressed is the TLS application protocol a node offers and
// accepts: a peer that negotiates it reads compressed data records
// (kind 2). A peer of an older version negotiates nothing and gets plain
// records only; the rest of the protocol is the same.
const alpnCompressed = "pairguard-mirror/2"

// alpnSums is alpnCompressed plus block sums: a peer that negotiates it
// also reads blockSumMsg frames. Nodes offer it first; a node that knows
// only alpnCompressed negotiates that.
const alpnSums = "pairguard-mirror/3"

// codec compresses and decompresses data records of up to one block.
// It is used by one session goroutine at a time.
type codec struct {
	block int
	level zstd.EncoderLevel
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	out   []byte // the last result, valid until the next call
}

func windowFor(block int) int {
	w := 1 << bits.Len(uint(max(block, zstd.MinWindowSize)-1))
	return min(w, zstd.MaxWindowSize)
}

// compress returns p compressed, or nil when that saves less than 1/32.
func (c *codec) compress(p []byte) ([]byte, error) {
	if c.enc == nil {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(windowFor(c.block)), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, fmt.Errorf("sdcard: zstd: %w", err)
		}
		c.enc = e
	}
	c.out = c.enc.EncodeAll(p, c.out[:0])
	if len(c.out) >= len(p)-len(p)/32 {
		return nil, nil
	}
	return c.out, nil
}

// decompress returns the record compressed in z; it refuses more than a
// block.
func (c *codec) decompress(z []byte) ([]byte, error) {
	if c.dec == nil {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(uint64(2*windowFor(c.block))), zstd.WithDecoderMaxWindow(uint64(windowFor(c.block))))
		if err != nil {
			return nil, fmt.Errorf("sdcard: zstd: %w", err)
		}
		c.dec = d
	}
	if cap(c.out) < c.block {
		c.out = make([]byte, 0, c.block)
	}
	out, err := c.dec.DecodeAll(z, c.out[:0])
	if err != nil {
		return nil, fmt.Errorf("sdcard: zstd record: %w", err)
	}
	if len(out) > c.block {
		return nil, fmt.Errorf("sdcard: zstd record of %d bytes, more than a block", len(out))
	}
	c.out = out
	return out, nil
}

// close releases the encoder's and decoder's memory.
func (c *codec) close() {
	if c.enc != nil {
		c.enc.Close()
		c.enc = nil
	}
	if c.dec != nil {
		c.dec.Close()
		c.dec = nil
	}
	c.out = nil
}
