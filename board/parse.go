package board

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// keySpec is one key of a board file: its dotted name and how it is set.
// set gets nil when the key is absent, the TOML value from the file, or a
// string from an override.
type keySpec struct {
	name   string
	output bool // the value is an OUTPUT (inline table or compact string)
	set    func(b *Board, v any) error
}

var keyTable = []keySpec{
	{name: "description", set: func(b *Board, v any) (err error) {
		b.Description, err = str(v, false)
		return err
	}},
	{name: "lan1.interface", set: func(b *Board, v any) (err error) {
		b.LAN1, err = ifname(v)
		return err
	}},
	{name: "lan2.interface", set: func(b *Board, v any) (err error) {
		b.LAN2, err = ifname(v)
		return err
	}},
	{name: "datastore.device", set: func(b *Board, v any) (err error) {
		b.Datastore, err = devpath(v, false)
		return err
	}},
	{name: "console.device", set: func(b *Board, v any) (err error) {
		b.Console.Device, err = devpath(v, false)
		return err
	}},
	{name: "console.baud", set: func(b *Board, v any) (err error) {
		b.Console.Baud, err = integer(v, 115200, 300, 4000000)
		return err
	}},
	{name: "led.role.red", output: true, set: func(b *Board, v any) (err error) {
		b.LEDs.RoleRed, err = output(v)
		return err
	}},
	{name: "led.role.green", output: true, set: func(b *Board, v any) (err error) {
		b.LEDs.RoleGreen, err = output(v)
		return err
	}},
	{name: "led.role.amber", output: true, set: func(b *Board, v any) (err error) {
		b.LEDs.RoleAmber, err = output(v)
		return err
	}},
	{name: "led.failover", output: true, set: func(b *Board, v any) (err error) {
		b.LEDs.Failover, err = output(v)
		return err
	}},
	{name: "button.input", output: true, set: func(b *Board, v any) (err error) {
		b.Button.Input, err = output(v)
		if err == nil && b.Button.Input.Kind == OutputSysfs {
			err = errors.New("the button must be a GPIO line, not a sysfs LED")
		}
		if err == nil && b.Button.Input.ActiveLow {
			err = errors.New("give the button's level with button.active, not active-low")
		}
		return err
	}},
	{name: "button.active", set: func(b *Board, v any) error {
		s, err := str(v, true)
		switch {
		case err != nil:
			return err
		case s == "" && b.Button.Input.Kind == OutputGPIO:
			return errors.New("missing (\"high\" or \"low\")")
		case s == "" || s == "high":
		case s == "low":
			b.Button.ActiveLow = true
		default:
			return fmt.Errorf("%q is neither \"high\" nor \"low\"", s)
		}
		return nil
	}},
	{name: "button.bias", set: func(b *Board, v any) error {
		s, err := str(v, true)
		if err != nil {
			return err
		}
		if s == "" {
			b.Button.Bias = BiasAsIs
			return nil
		}
		for bias := BiasAsIs; bias <= BiasPullDown; bias++ {
			if bias.String() == s {
				b.Button.Bias = bias
				return nil
			}
		}
		return fmt.Errorf("unknown bias %q (as-is, disabled, pull-up, pull-down)", s)
	}},
	{name: "button.debounce", set: func(b *Board, v any) (err error) {
		b.Button.Debounce, err = duration(v, 20*time.Millisecond, 0, time.Second)
		return err
	}},
	{name: "watchdog.device", set: func(b *Board, v any) (err error) {
		b.Watchdog.Device, err = devpath(v, true)
		return err
	}},
	{name: "watchdog.timeout", set: func(b *Board, v any) (err error) {
		b.Watchdog.Timeout, err = duration(v, 10*time.Second, time.Second, time.Hour)
		if err == nil && b.Watchdog.Timeout%time.Second != 0 {
			err = fmt.Errorf("%v is not a whole number of seconds", b.Watchdog.Timeout)
		}
		return err
	}},
}

// flatten decodes a board file into dotted keys. Output keys stay whole
// (their inline table is their value); a key the table does not know is an
// error naming it.
func flatten(name string, data []byte) (map[string]any, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &KeyError{Board: name, Key: pe.LastKey, Err: fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)}
		}
		return nil, &KeyError{Board: name, Err: err}
	}
	known := make(map[string]keySpec, len(keyTable))
	for _, k := range keyTable {
		known[k.name] = k
	}
	flat := make(map[string]any)
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		for k, v := range m {
			key := prefix + k
			spec, ok := known[key]
			if sub, isMap := v.(map[string]any); isMap && !spec.output {
				if err := walk(key+".", sub); err != nil {
					return err
				}
				continue
			}
			if !ok {
				return &KeyError{Board: name, Key: key, Err: errors.New("unknown key")}
			}
			flat[key] = v
		}
		return nil
	}
	if err := walk("", raw); err != nil {
		return nil, err
	}
	return flat, nil
}

func str(v any, optional bool) (string, error) {
	switch v := v.(type) {
	case nil:
		if optional {
			return "", nil
		}
		return "", errors.New("missing")
	case string:
		return v, nil
	}
	return "", fmt.Errorf("want a string, have %T", v)
}

func ifname(v any) (string, error) {
	s, err := str(v, false)
	switch {
	case err != nil:
		return "", err
	case s == "":
		return "", errors.New("empty interface name")
	case len(s) > 15:
		return "", fmt.Errorf("interface name %q is longer than 15 bytes", s)
	case strings.ContainsAny(s, "/: \t"):
		return "", fmt.Errorf("interface name %q contains '/', ':' or a space", s)
	}
	return s, nil
}

// devpath returns an absolute device path; with noneOK, "none" or an absent
// key give "".
func devpath(v any, noneOK bool) (string, error) {
	s, err := str(v, noneOK)
	switch {
	case err != nil:
		return "", err
	case noneOK && (s == "" || s == "none"):
		return "", nil
	case !path.IsAbs(s) || path.Clean(s) != s:
		return "", fmt.Errorf("%q is not a clean absolute path", s)
	}
	return s, nil
}

func integer(v any, def, lo, hi int) (int, error) {
	var n int64
	switch v := v.(type) {
	case nil:
		return def, nil
	case int64:
		n = v
	case string:
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, fmt.Errorf("%q is not an integer", v)
		}
	default:
		return 0, fmt.Errorf("want an integer, have %T", v)
	}
	if n < int64(lo) || n > int64(hi) {
		return 0, fmt.Errorf("%d is outside %d..%d", n, lo, hi)
	}
	return int(n), nil
}

func duration(v any, def, lo, hi time.Duration) (time.Duration, error) {
	s, err := str(v, true)
	if err != nil {
		return 0, fmt.Errorf("want a duration string such as \"20ms\": %w", err)
	}
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%v is outside %v..%v", d, lo, hi)
	}
	return d, nil
}

// output parses an OUTPUT: absent, a compact string or an inline table.
func output(v any) (Output, error) {
	switch v := v.(type) {
	case nil:
		return Output{Kind: OutputNone, Offset: -1}, nil
	case string:
		return compact(v)
	case map[string]any:
		return table(v)
	}
	return Output{}, fmt.Errorf("want a string or an inline table, have %T", v)
}

func compact(s string) (Output, error) {
	o := Output{Offset: -1}
	if s == "none" {
		o.Kind = OutputNone
		return o, nil
	}
	if name, ok := strings.CutPrefix(s, "sysfs:"); ok {
		o.Kind, o.LED = OutputSysfs, name
		return o, o.validate()
	}
	body, low := strings.CutSuffix(s, ",active-low")
	chip, line, ok := strings.Cut(body, ":")
	if !ok {
		return o, fmt.Errorf("%q is not \"CHIP:LINE\", \"sysfs:NAME\" or \"none\"", s)
	}
	o.Kind, o.Chip, o.ActiveLow = OutputGPIO, chip, low
	if n, err := strconv.Atoi(line); err == nil {
		o.Offset = n
		if n < 0 {
			return o, fmt.Errorf("negative offset %d", n)
		}
	} else {
		o.Line = line
	}
	return o, o.validate()
}

func table(m map[string]any) (Output, error) {
	o := Output{Offset: -1}
	for k, v := range m {
		var err error
		switch k {
		case "chip":
			o.Chip, err = str(v, false)
		case "line":
			o.Line, err = str(v, false)
		case "offset":
			o.Offset, err = integer(v, -1, 0, 511)
		case "sysfs":
			o.LED, err = str(v, false)
		case "active-low":
			b, ok := v.(bool)
			if !ok {
				err = fmt.Errorf("want a boolean, have %T", v)
			}
			o.ActiveLow = b
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return o, fmt.Errorf("%s: %w", k, err)
		}
	}
	switch {
	case o.LED != "" && (o.Chip != "" || o.Line != "" || o.Offset >= 0 || o.ActiveLow):
		return o, errors.New("sysfs excludes chip, line, offset and active-low")
	case o.LED != "":
		o.Kind = OutputSysfs
	default:
		o.Kind = OutputGPIO
	}
	return o, o.validate()
}

func (o Output) validate() error {
	switch o.Kind {
	case OutputSysfs:
		if o.LED == "" || strings.ContainsAny(o.LED, "/") || o.LED == "." || o.LED == ".." {
			return fmt.Errorf("bad LED-class name %q", o.LED)
		}
	case OutputGPIO:
		if o.Chip == "" {
			return errors.New("chip: missing")
		}
		if o.Line == "" && o.Offset < 0 {
			return errors.New("neither line nor offset given")
		}
	}
	return nil
}

// check tests the relations between keys.
func (b *Board) check() error {
	if b.LAN1 == b.LAN2 {
		return &KeyError{Board: b.Name, Key: "lan2.interface", Err: fmt.Errorf("same interface as lan1 (%s)", b.LAN1)}
	}
	if b.Console.Device == b.Datastore {
		return &KeyError{Board: b.Name, Key: "console.device", Err: fmt.Errorf("same device as the datastore (%s)", b.Datastore)}
	}
	type use struct{ key, id string }
	var seen []use
	for _, u := range []struct {
		key string
		o   Output
	}{
		{"led.role.red", b.LEDs.RoleRed},
		{"led.role.green", b.LEDs.RoleGreen},
		{"led.role.amber", b.LEDs.RoleAmber},
		{"led.failover", b.LEDs.Failover},
		{"button.input", b.Button.Input},
	} {
		var ids []string
		switch u.o.Kind {
		case OutputSysfs:
			ids = []string{"sysfs:" + u.o.LED}
		case OutputGPIO:
			chip := strings.TrimPrefix(u.o.Chip, "/dev/")
			if u.o.Line != "" {
				ids = append(ids, chip+":"+u.o.Line)
			}
			if u.o.Offset >= 0 {
				ids = append(ids, chip+":"+strconv.Itoa(u.o.Offset))
			}
		}
		for _, id := range ids {
			for _, s := range seen {
				if s.id == id {
					return &KeyError{Board: b.Name, Key: u.key, Err: fmt.Errorf("%s is already used by %s", id, s.key)}
				}
			}
			seen = append(seen, use{u.key, id})
		}
	}
	return nil
}
