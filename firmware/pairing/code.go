package pairing

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Code is a one-time pairing code: eight decimal digits, shown and typed as
// NNNN-NNNN. Its string form without the dash is CPace's password (PRS).
type Code string

// codeSpace is the number of codes; each is equally likely.
const codeSpace = 100_000_000

// NewCode draws a code uniformly from the 10^8 codes, by rejection
// sampling of 32-bit values from rand (crypto/rand in production).
func NewCode(rand io.Reader) (Code, error) {
	const limit = (1 << 32) / codeSpace * codeSpace // largest multiple of 10^8 below 2^32
	var b [4]byte
	for {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return "", fmt.Errorf("pairing: code: %w", err)
		}
		if v := binary.BigEndian.Uint32(b[:]); v < limit {
			return Code(fmt.Sprintf("%08d", v%codeSpace)), nil
		}
	}
}

// ParseCode normalises what an operator typed: eight digits with or without
// the dash after the fourth, surrounding spaces ignored.
func ParseCode(s string) (Code, error) {
	s = strings.TrimSpace(s)
	if len(s) == 9 && s[4] == '-' {
		s = s[:4] + s[5:]
	}
	if len(s) != 8 {
		return "", fmt.Errorf("pairing: code %q: want NNNN-NNNN", s)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("pairing: code %q: want NNNN-NNNN", s)
		}
	}
	return Code(s), nil
}

// String returns the code as shown: NNNN-NNNN.
func (c Code) String() string {
	if len(c) != 8 {
		return string(c)
	}
	return string(c[:4]) + "-" + string(c[4:])
}

// prs is the password-related string CPace hashes into its generator.
func (c Code) prs() []byte { return []byte(c) }
