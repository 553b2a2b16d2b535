package frame

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary payloads to Decode and UnmarshalBinary: they
// must not panic, must return one of the documented errors, and a frame
// they accept must encode back to the same bytes.
func FuzzDecode(f *testing.F) {
	key := NewKey(testSecret)
	good := mustEncode(f, testFrame(), key)
	f.Add(good)
	f.Add(append(bytes.Clone(good), make([]byte, 20)...))
	f.Add(mustEncode(f, testFrame(), nil))
	f.Add(mustEncode(f, Frame{Version: 3, Type: TypePairHello, PairID: key.PairID()}, key))
	f.Add(settingsFrame(f, key)) // TypeSettings: not a Frame, ErrMalformed
	f.Add([]byte{})
	f.Add([]byte("PG"))
	f.Add([]byte("PG\x01\x01\x00\x16"))
	f.Add([]byte("PG\x01\x01\xff\xff"))

	known := []error{ErrShort, ErrMagic, ErrAuth, ErrVersion, ErrPair, ErrMalformed}
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, decode := range map[string]func(*Frame) error{
			"Decode":          func(fr *Frame) error { return Decode(b, key, fr) },
			"UnmarshalBinary": func(fr *Frame) error { return fr.UnmarshalBinary(b) },
		} {
			var fr Frame
			err := decode(&fr)
			if err != nil {
				ok := false
				for _, k := range known {
					ok = ok || errors.Is(err, k)
				}
				if !ok {
					t.Fatalf("%s: undocumented error %v", name, err)
				}
				continue
			}
			var k *Key
			if name == "Decode" {
				k = key
			}
			out, err := fr.AppendBinary(nil, k)
			if err != nil {
				t.Fatalf("%s accepted a frame AppendBinary refuses: %v (%+v)", name, err, fr)
			}
			// Reserved bytes and software padding are not kept; the rest is.
			in := bytes.Clone(b[:Len])
			clear(in[26:28])
			clear(in[offSoftware+len(fr.Software) : offAuth])
			if k == nil {
				clear(in[offAuth:])
			}
			if name == "Decode" && !bytes.Equal(in, b[:Len]) {
				// The authenticator covered the cleared bytes; re-encoding
				// cannot reproduce them. Only compare the fields.
				var again Frame
				if err := again.UnmarshalBinary(out); err != nil || again != fr {
					t.Fatalf("re-encoded frame differs: %v %+v", err, again)
				}
				continue
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("%s round trip:\n in % x\nout % x", name, in, out)
			}
		}
	})
}
