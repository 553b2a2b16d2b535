package config

import (
	"strings"
	"testing"
	"time"
)

// A main or spare without pair-key is valid: it is taught in.
func TestNoPairKeyIsTeachIn(t *testing.T) {
	c, err := Parse("f.toml", []byte("mode = \"spare\"\n[lan1]\ninterface=\"a\"\n[lan2]\ninterface=\"b\"\naddress=\"10.9.0.2/24\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Key) != 0 || c.PairWindow.Duration != DefaultPairWindow || DefaultPairWindow != 5*time.Minute {
		t.Fatalf("key %q, pair-window %v", c.Key, c.PairWindow)
	}
	_, err = Parse("f.toml", []byte("mode = \"main\"\npair-window = \"5s\"\n[lan1]\ninterface=\"a\"\n[lan2]\ninterface=\"b\"\n"))
	if err == nil || !strings.Contains(err.Error(), "pair-window") {
		t.Fatalf("pair-window of 5s: %v", err)
	}
}
