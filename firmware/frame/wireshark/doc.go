// Package wireshark ships the Wireshark dissector for failover-line frames,
// pairguard.lua in this directory, and runs it through tshark for tests and
// support tools.
//
// Engineers install the Lua file in Wireshark's personal plugin folder, or
// load it for one run:
//
//	tshark -X lua_script:firmware/frame/wireshark/pairguard.lua -r capture.pcap -V
//
// It decodes EtherType 0x88B5 into fields named pairguard.<field> (type,
// role, epoch, seq, boot, node, pair, generation, version, flags and one
// boolean per flag), flags frames of the wrong length with an expert note,
// and, given the pair key in the preference pairguard.key, verifies the
// authenticator (pairguard.auth.good). The dissector follows the byte map
// in package frame; a change of the wire layout changes both.
package wireshark

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Dissector is the content of pairguard.lua. `pairguard snapshot` puts it
// next to the captures it collects.
//
//go:embed pairguard.lua
var Dissector []byte

// ErrNoTshark is returned by Fields when tshark is not installed.
var ErrNoTshark = errors.New("wireshark: tshark is not installed (Debian package tshark)")

// Fields decodes the pcap file with tshark and the dissector and returns,
// for each packet, the values of the named fields (tshark -T fields; a
// field present several times is joined with commas, an absent one is
// empty). key, when not empty, is set as the pair-key preference.
func Fields(ctx context.Context, pcap, key string, fields ...string) ([][]string, error) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		return nil, ErrNoTshark
	}
	script, err := os.CreateTemp("", "pg-dissector-*.lua")
	if err != nil {
		return nil, err
	}
	defer os.Remove(script.Name())
	if _, err := script.Write(Dissector); err != nil {
		script.Close()
		return nil, err
	}
	if err := script.Close(); err != nil {
		return nil, err
	}
	args := []string{"-n", "-X", "lua_script:" + script.Name(), "-r", pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"}
	if key != "" {
		args = append(args, "-o", "pairguard.key:"+key)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.CommandContext(ctx, tshark, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("wireshark: tshark: %w\n%s", err, stderr.String())
	}
	var rows [][]string
	for line := range strings.Lines(string(out)) {
		rows = append(rows, strings.Split(strings.TrimSuffix(line, "\n"), "\t"))
	}
	return rows, nil
}
