// Package board describes the appliances pairguard runs on: which network
// interface is LAN 1 and which LAN 2, where the datastore and the serial
// console are, which GPIO lines or LED-class devices make the front panel,
// and which watchdog (if any) fences the node.
//
// Each board is one TOML file in boards/, embedded in the binary; adding a
// board is adding a file. The config names the board (`board = "NAME"`) and
// may override single entries by their dotted key (see [Keys]). Load
// validates the whole description and refuses a board with any error; the
// error is a *KeyError naming the board and the key.
//
// # File format
//
//	description = "free text"
//	[lan1]      interface = "eth0"
//	[lan2]      interface = "eth1"
//	[datastore] device = "/dev/mmcblk0p3"
//	[console]   device = "/dev/ttyAMA0", baud = 115200
//	[led]       failover = OUTPUT
//	[led.role]  red = OUTPUT, green = OUTPUT, amber = OUTPUT
//	[button]    input = OUTPUT (a GPIO line), active = "high"|"low",
//	            bias = "pull-up"|"pull-down"|"disabled"|"as-is", debounce = "20ms"
//	[watchdog]  device = "/dev/watchdog"|"none", timeout = "10s"
//
// An OUTPUT (the word also covers the button's input line) is either an
// inline table
//
//	{ chip = "gpiochip0", line = "led-role-green", offset = 4, active-low = false }
//	{ sysfs = "ACT" }
//
// or a compact string: "gpiochip0:led-role-green", "gpiochip0:4",
// "sysfs:ACT", "none"; a compact GPIO form may end in ",active-low".
// Overrides always use the compact form. A GPIO line is found by name when
// the chip names its lines; offset is the fallback for a chip whose lines
// are all unnamed. `chip` is a device name ("gpiochip0"), a path, or the
// chip's label ("9030000.pl061").
//
// Every LED is optional (a headless board is valid). The role LED is any of
// red, green and amber; a board with red and green but no amber is a
// bicolour pair, and amber lights both.
package board

//go:generate go tool stringer -type=OutputKind,Bias -linecomment -output=names_string.go

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"
)

//go:embed boards/*.toml
var files embed.FS

// ErrUnknownBoard is returned (wrapped) by Load for a name with no board file.
var ErrUnknownBoard = errors.New("board: unknown board")

// Board is a validated board description.
type Board struct {
	Name        string
	Description string
	LAN1        string // LAN 1 interface, the site network
	LAN2        string // LAN 2 interface, the failover line
	Datastore   string // datastore block device
	Console     Console
	LEDs        LEDs
	Button      Button
	Watchdog    Watchdog
}

// Console is the serial console.
type Console struct {
	Device string
	Baud   int
}

// LEDs are the front panel's logical LEDs. An output whose Kind is
// OutputNone is not fitted.
type LEDs struct {
	RoleRed   Output
	RoleGreen Output
	RoleAmber Output // none on a red/green bicolour LED: amber is both on
	Failover  Output
}

// Bicolour reports whether the role LED makes amber from red and green.
func (l LEDs) Bicolour() bool {
	return l.RoleAmber.Kind == OutputNone && l.RoleRed.Kind != OutputNone && l.RoleGreen.Kind != OutputNone
}

// Button is the front-panel push button.
type Button struct {
	Input     Output        // a GPIO line; OutputNone when there is no button
	ActiveLow bool          // pressed reads low
	Bias      Bias          // pull resistor to request
	Debounce  time.Duration // edges closer than this are one edge
}

// Watchdog is the hardware watchdog used for self-fencing.
type Watchdog struct {
	Device  string        // "" when the board has none
	Timeout time.Duration // whole seconds
}

// OutputKind says what an Output drives.
type OutputKind uint8

// Output kinds. The String names are the comments (go generate: stringer -linecomment).
const (
	outputInvalid OutputKind = iota // invalid
	// OutputNone: not fitted.
	OutputNone // none
	// OutputGPIO: a line of a GPIO character device.
	OutputGPIO // gpio
	// OutputSysfs: a LED-class device under /sys/class/leds.
	OutputSysfs // sysfs
)

// Output is one GPIO line or LED-class LED.
type Output struct {
	Kind      OutputKind
	Chip      string // GPIO: device name, path or label
	Line      string // GPIO: line name, "" to use Offset
	Offset    int    // GPIO: line offset, -1 when not given
	ActiveLow bool   // GPIO: on (or pressed) is electrically low
	LED       string // sysfs: LED-class name
}

// String returns the compact form of o.
func (o Output) String() string {
	switch o.Kind {
	case OutputNone:
		return "none"
	case OutputSysfs:
		return "sysfs:" + o.LED
	case OutputGPIO:
		s := o.Chip + ":"
		switch {
		case o.Line != "" && o.Offset >= 0:
			s += fmt.Sprintf("%s(%d)", o.Line, o.Offset)
		case o.Line != "":
			s += o.Line
		default:
			s += fmt.Sprint(o.Offset)
		}
		if o.ActiveLow {
			s += ",active-low"
		}
		return s
	}
	return o.Kind.String()
}

// Bias is the pull resistor requested for the button line.
type Bias uint8

// Biases. The String names are the comments, and the board file's values.
const (
	biasInvalid Bias = iota // invalid
	// BiasAsIs leaves the line's bias as it is.
	BiasAsIs // as-is
	// BiasDisabled: no pull resistor.
	BiasDisabled // disabled
	BiasPullUp   // pull-up
	BiasPullDown // pull-down
)

// KeyError is a problem with one key of a board file or override.
type KeyError struct {
	Board    string
	Key      string // dotted key, "" for the file as a whole
	Override bool   // the value came from the config's overrides
	Err      error
}

func (e *KeyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "board: %s", e.Board)
	if e.Override {
		b.WriteString(" (override)")
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *KeyError) Unwrap() error { return e.Err }

// Names returns the names of the built-in boards, sorted.
func Names() []string {
	ents, _ := fs.ReadDir(files, "boards")
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".toml"); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Load returns the built-in board called name with overrides applied.
// Override keys are the file's dotted keys (see [Keys]); values are strings
// in the file's syntax, outputs in the compact form. A nil map overrides
// nothing.
func Load(name string, overrides map[string]string) (*Board, error) {
	data, err := files.ReadFile("boards/" + name + ".toml")
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownBoard, name, strings.Join(Names(), ", "))
	}
	return Parse(name, data, overrides)
}

// Parse validates a board file's contents under the given name, with
// overrides applied as Load does. It is exported for board files kept
// outside the binary and for tests.
func Parse(name string, data []byte, overrides map[string]string) (*Board, error) {
	flat, err := flatten(name, data)
	if err != nil {
		return nil, err
	}
	b := &Board{Name: name}
	for _, k := range keyTable {
		v, ok := flat[k.name]
		src := false
		if s, over := overrides[k.name]; over {
			v, ok, src = s, true, true
		}
		if !ok {
			v = nil
		}
		if err := k.set(b, v); err != nil {
			return nil, &KeyError{Board: name, Key: k.name, Override: src, Err: err}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		if !slices.ContainsFunc(keyTable, func(s keySpec) bool { return s.name == k }) {
			return nil, &KeyError{Board: name, Key: k, Override: true, Err: errors.New("unknown key")}
		}
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	return b, nil
}

// Keys returns every key a board file or override may set, in file order.
func Keys() []string {
	out := make([]string, len(keyTable))
	for i, k := range keyTable {
		out[i] = k.name
	}
	return out
}
