package addrtest

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestManager(t *testing.T) {
	left := netip.MustParsePrefix("192.0.2.10/24")
	v6 := netip.MustParsePrefix("2001:db8::10/64")
	m := New(left)
	if has, err := m.Has(left); err != nil || !has {
		t.Fatalf("Has(left over) = %t, %v", has, err)
	}
	for range 2 {
		if err := m.Remove(left); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Add(v6); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(v6); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	m.SetErr(OpRemove, boom)
	if err := m.Remove(v6); !errors.Is(err, boom) {
		t.Fatalf("Remove with SetErr = %v, want boom", err)
	}
	if got := m.Addresses(); !slices.Equal(got, []netip.Prefix{v6}) {
		t.Errorf("Addresses() = %v, want [%v] (a failed Remove must not remove)", got, v6)
	}
	var got []string
	for _, c := range m.Calls() {
		got = append(got, c.String())
	}
	want := []string{"Has(192.0.2.10/24)", "Remove(192.0.2.10/24)", "Remove(192.0.2.10/24)", "Add(2001:db8::10/64)", "Add(2001:db8::10/64)", "Remove(2001:db8::10/64)"}
	if !slices.Equal(got, want) {
		t.Errorf("Calls() = %v\nwant %v", got, want)
	}
	if OpInvalid.String() != "Op(0)" {
		t.Errorf("OpInvalid.String() = %q", OpInvalid.String())
	}
}
