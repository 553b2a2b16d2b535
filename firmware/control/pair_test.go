package control

import "testing"

func TestParsePair(t *testing.T) {
	c, _ := Lookup("pair")
	for _, tc := range []struct {
		args       []string
		pair, code string
		ok         bool
	}{
		{[]string{"begin"}, "begin", "", true},
		{[]string{"join", "1234-5678"}, "join", "1234-5678", true},
		{[]string{"accept"}, "accept", "", true},
		{[]string{"join"}, "", "", false},
		{[]string{"begin", "1234-5678"}, "", "", false},
		{[]string{"dance"}, "", "", false},
		{nil, "", "", false},
	} {
		inv, err := c.Parse(tc.args, "s")
		if (err == nil) != tc.ok || (tc.ok && (inv.Req.Pair != tc.pair || inv.Req.Code != tc.code)) {
			t.Errorf("pair %q: %+v, %v", tc.args, inv.Req, err)
		}
	}
	if err := (Request{Cmd: "status", Code: "1"}).Check(); err == nil {
		t.Error("status with a code accepted")
	}
	if err := (Request{Cmd: "pair", Pair: "accept", Code: "1"}).Check(); err == nil {
		t.Error("pair accept with a code accepted")
	}
	if _, ok := Lookup("unpair"); !ok {
		t.Error("no unpair command")
	}
}
