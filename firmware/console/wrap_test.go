package console

import (
	"bytes"
	"strings"
	"testing"
	"testing/quick"
)

func TestWrapper(t *testing.T) {
	tests := []struct {
		name, in, want string
		width          int
	}{
		{"LF becomes CR LF", "a\nb\n", "a\r\nb\r\n", 80},
		{"CR LF stays one break", "a\r\nb\r\n", "a\r\nb\r\n", 80},
		{"break at space", "aaa bbb ccc", "aaa bbb\r\nccc\r\n", 8},
		{"exact width", "12345678\nx", "12345678\r\nx\r\n", 8},
		{"hard break", "123456789012", "12345678\r\n9012\r\n", 8},
		{"tab", "a\tb", "a       b\r\n", 80},
		{"tab past width", "1234567\tb", "1234567\r\nb\r\n", 8},
		{"runes count as one", "éééé ééé", "éééé\r\nééé\r\n", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			w := NewWrapper(&b, tt.width)
			if _, err := w.Write([]byte(tt.in)); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// TestWrapperProperties: whatever is written and however it is split into
// writes, no line exceeds the width, every line ends in CR LF, and the words
// come out unchanged (long words may be cut).
func TestWrapperProperties(t *testing.T) {
	f := func(words []uint8, splits []uint8) bool {
		var in strings.Builder
		for i, w := range words {
			switch {
			case w%17 == 0:
				in.WriteString("\n")
			case i > 0:
				in.WriteString(" ")
			}
			in.WriteString(strings.Repeat("w", int(w%23)+1))
		}
		var out bytes.Buffer
		w := NewWrapper(&out, 20)
		rest := []byte(in.String())
		for _, s := range splits {
			n := int(s) % (len(rest) + 1)
			w.Write(rest[:n])
			rest = rest[n:]
		}
		w.Write(rest)
		w.Flush()
		got := out.String()
		if got != "" && !strings.HasSuffix(got, "\r\n") {
			return false
		}
		for _, l := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
			if len(l) > 20 || strings.ContainsAny(l, "\r\n") {
				return false
			}
		}
		// Same characters apart from the breaks and the spaces at them.
		strip := func(s string) string {
			return strings.NewReplacer("\r", "", "\n", "", " ", "").Replace(s)
		}
		return strip(got) == strip(in.String())
	}
	if err := quick.Check(f, nil); err != nil {
		t.Error(err)
	}
}
