package board

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestBuiltinBoards(t *testing.T) {
	names := Names()
	for _, want := range []string{"qemu-virt-arm64", "rpi4-cm4"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("Names() = %v, missing %s", names, want)
		}
	}
	for _, n := range names {
		b, err := Load(n, nil)
		if err != nil {
			t.Errorf("Load(%q): %v", n, err)
			continue
		}
		if b.Name != n || b.Description == "" {
			t.Errorf("%s: name %q, description %q", n, b.Name, b.Description)
		}
	}
}

func TestQEMUBoard(t *testing.T) {
	b, err := Load("qemu-virt-arm64", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.LAN1 != "eth0" || b.LAN2 != "eth1" || b.Datastore != "/dev/mmcblk0" || b.Console.Device != "/dev/ttyAMA0" || b.Console.Baud != 115200 {
		t.Errorf("interfaces/devices: %+v", b)
	}
	if !b.LEDs.Bicolour() {
		t.Errorf("role LED should be a red/green pair: %+v", b.LEDs)
	}
	want := map[string]Output{
		"green":    {Kind: OutputGPIO, Chip: "gpiochip0", Line: "led-role-green", Offset: 4},
		"red":      {Kind: OutputGPIO, Chip: "gpiochip0", Line: "led-role-red", Offset: 5},
		"failover": {Kind: OutputGPIO, Chip: "gpiochip0", Line: "led-failover", Offset: 6},
		"button":   {Kind: OutputGPIO, Chip: "gpiochip0", Line: "button", Offset: 3},
	}
	have := map[string]Output{"green": b.LEDs.RoleGreen, "red": b.LEDs.RoleRed, "failover": b.LEDs.Failover, "button": b.Button.Input}
	for k, w := range want {
		if have[k] != w {
			t.Errorf("%s = %+v, want %+v", k, have[k], w)
		}
	}
	if b.Button.ActiveLow || b.Button.Debounce != 20*time.Millisecond || b.Button.Bias != BiasAsIs {
		t.Errorf("button = %+v", b.Button)
	}
	if b.Watchdog.Device != "" {
		t.Errorf("watchdog = %+v, want none", b.Watchdog)
	}
}

func TestRPiBoard(t *testing.T) {
	b, err := Load("rpi4-cm4", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.LEDs.RoleGreen != (Output{Kind: OutputSysfs, LED: "ACT", Offset: -1}) || b.LEDs.RoleRed.LED != "PWR" {
		t.Errorf("role LEDs = %+v", b.LEDs)
	}
	if !b.Button.ActiveLow || b.Button.Bias != BiasPullUp {
		t.Errorf("button = %+v", b.Button)
	}
	if b.Watchdog != (Watchdog{Device: "/dev/watchdog", Timeout: 10 * time.Second}) {
		t.Errorf("watchdog = %+v", b.Watchdog)
	}
}

func TestOverrides(t *testing.T) {
	b, err := Load("qemu-virt-arm64", map[string]string{
		"lan1.interface":   "lan1",
		"led.role.amber":   "gpiochip0:7,active-low",
		"led.failover":     "none",
		"led.role.green":   "sysfs:green:status",
		"button.active":    "low",
		"button.debounce":  "5ms",
		"console.baud":     "9600",
		"watchdog.device":  "/dev/watchdog1",
		"watchdog.timeout": "30s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.LAN1 != "lan1" || b.LAN2 != "eth1" {
		t.Errorf("LAN1 %q LAN2 %q", b.LAN1, b.LAN2)
	}
	if b.LEDs.RoleAmber != (Output{Kind: OutputGPIO, Chip: "gpiochip0", Offset: 7, ActiveLow: true}) {
		t.Errorf("amber = %+v", b.LEDs.RoleAmber)
	}
	if b.LEDs.Bicolour() {
		t.Error("a board with an amber LED is not bicolour")
	}
	if b.LEDs.Failover.Kind != OutputNone {
		t.Errorf("failover = %+v", b.LEDs.Failover)
	}
	if b.LEDs.RoleGreen.Kind != OutputSysfs || b.LEDs.RoleGreen.LED != "green:status" {
		t.Errorf("green = %+v", b.LEDs.RoleGreen)
	}
	if !b.Button.ActiveLow || b.Button.Debounce != 5*time.Millisecond || b.Console.Baud != 9600 {
		t.Errorf("button %+v baud %d", b.Button, b.Console.Baud)
	}
	if b.Watchdog != (Watchdog{Device: "/dev/watchdog1", Timeout: 30 * time.Second}) {
		t.Errorf("watchdog = %+v", b.Watchdog)
	}
	// The built-in board is unchanged for the next caller.
	b2, _ := Load("qemu-virt-arm64", nil)
	if b2.LAN1 != "eth0" {
		t.Errorf("override leaked: %q", b2.LAN1)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		over map[string]string
		key  string
		msg  string
	}{
		{map[string]string{"lan3.interface": "eth2"}, "lan3.interface", "unknown key"},
		{map[string]string{"lan2.interface": "eth0"}, "lan2.interface", "same interface"},
		{map[string]string{"lan1.interface": "a-very-long-interface"}, "lan1.interface", "longer than 15"},
		{map[string]string{"datastore.device": "mmcblk0"}, "datastore.device", "absolute"},
		{map[string]string{"console.baud": "fast"}, "console.baud", "not an integer"},
		{map[string]string{"led.role.red": "gpiochip0"}, "led.role.red", "CHIP:LINE"},
		{map[string]string{"led.role.red": "sysfs:a/b"}, "led.role.red", "LED-class"},
		{map[string]string{"led.role.red": "gpiochip0:-1"}, "led.role.red", "negative"},
		{map[string]string{"led.failover": "gpiochip0:4"}, "led.failover", "already used by led.role.green"},
		{map[string]string{"led.failover": "gpiochip0:button"}, "button.input", "already used by led.failover"},
		{map[string]string{"button.input": "sysfs:ACT"}, "button.input", "GPIO line"},
		{map[string]string{"button.active": "pressed"}, "button.active", "neither"},
		{map[string]string{"button.bias": "up"}, "button.bias", "unknown bias"},
		{map[string]string{"button.debounce": "2s"}, "button.debounce", "outside"},
		{map[string]string{"watchdog.timeout": "1500ms"}, "watchdog.timeout", "whole number"},
		{map[string]string{"watchdog.device": "watchdog"}, "watchdog.device", "absolute"},
	} {
		_, err := Load("qemu-virt-arm64", tc.over)
		var ke *KeyError
		if !errors.As(err, &ke) {
			t.Errorf("%v: error %v is not a *KeyError", tc.over, err)
			continue
		}
		if ke.Key != tc.key || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: error %q (key %q), want key %q and %q", tc.over, err, ke.Key, tc.key, tc.msg)
		}
	}
}

func TestBadFiles(t *testing.T) {
	for file, want := range map[string]string{
		"bad-unknown-key.toml": "led.role.green: colour: unknown field",
		"bad-shared-line.toml": "button.input: gpiochip0:4 is already used by led.failover",
		"bad-syntax.toml":      "line 2",
	} {
		data, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(strings.TrimSuffix(file, ".toml"), data, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", file, err, want)
		}
	}
	// A missing required key is named too.
	_, err := Parse("empty", []byte(`description = "x"`), nil)
	if err == nil || !strings.Contains(err.Error(), "lan1.interface: missing") {
		t.Errorf("empty board: %v", err)
	}
	_, err = Parse("x", []byte("[lan1]\ninterface = \"eth0\"\nspeed = 100\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "lan1.speed: unknown key") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestUnknownBoard(t *testing.T) {
	for _, n := range []string{"pdp-11", "../board", ""} {
		_, err := Load(n, nil)
		if !errors.Is(err, ErrUnknownBoard) || !strings.Contains(err.Error(), "qemu-virt-arm64") {
			t.Errorf("Load(%q) = %v", n, err)
		}
	}
}

func TestOutputString(t *testing.T) {
	for _, s := range []string{"none", "sysfs:ACT", "gpiochip0:4", "gpiochip0:led-x", "gpiochip0:3,active-low"} {
		o, err := compact(s)
		if err != nil || o.String() != s {
			t.Errorf("compact(%q) = %v, %v; String %q", s, o, err, o.String())
		}
	}
}

// FuzzParse: no board file or override makes Parse panic, and whatever it
// accepts passes its own checks again.
func FuzzParse(f *testing.F) {
	for _, n := range Names() {
		data, err := files.ReadFile("boards/" + n + ".toml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "led.role.amber", "gpiochip0:7")
	}
	f.Add([]byte("[led]\nfailover = 3"), "button.input", "sysfs:x")
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		b, err := Parse("fuzz", data, map[string]string{key: value})
		if err != nil {
			return
		}
		if b.LAN1 == "" || b.LAN1 == b.LAN2 || b.Datastore == "" {
			t.Fatalf("accepted an invalid board: %+v", b)
		}
		if err := b.check(); err != nil {
			t.Fatalf("accepted board fails check: %v", err)
		}
	})
}
