package hil

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pairguard/pairguard/firmware/panel"
)

// ledEvent is one change of a PL061 output seen by QEMU's trace.
type ledEvent struct {
	at    time.Time
	line  int
	level int
}

// traceLine matches QEMU's pl061_set_output trace with -msg timestamp=on:
// "PID@SEC.USEC:pl061_set_output DEVICE setting output N to V".
var traceLine = regexp.MustCompile(`^\d+@(\d+)\.(\d+):pl061_set_output \S+ setting output (\d+) to (\d+)`)

// ledEvents reads the board's LED trace.
func (n *node) ledEvents() []ledEvent {
	n.t.Helper()
	f, err := os.Open(n.path("trace.log"))
	if err != nil {
		n.t.Fatalf("hil: %s LED trace: %v", n.spec.name, err)
	}
	defer f.Close()
	var evs []ledEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := traceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		usec, _ := strconv.ParseInt(m[2], 10, 64)
		line, _ := strconv.Atoi(m[3])
		level, _ := strconv.Atoi(m[4])
		evs = append(evs, ledEvent{at: time.Unix(sec, usec*1000), line: line, level: level})
	}
	return evs
}

// pattern is how one LED line behaved over a window of the trace.
type pattern struct {
	on      bool          // lit at the end of the window
	changes int           // changes inside the window
	lit     time.Duration // total time lit inside the window
	window  time.Duration
}

// String names the pattern as firmware/panel does (off, solid, slow-blink,
// fast-blink), or "changing(N)" for too few changes to call it a blink.
func (p pattern) String() string {
	switch {
	case p.changes == 0 && p.on:
		return panel.Solid.String()
	case p.changes == 0:
		return panel.Off.String()
	case p.changes < 3:
		return fmt.Sprintf("changing(%d)", p.changes)
	}
	// Slow blink has 500 ms halves, fast blink 100 ms.
	if half := p.window / time.Duration(p.changes); half < (panel.SlowHalf+panel.FastHalf)/2 {
		return panel.FastBlink.String()
	}
	return panel.SlowBlink.String()
}

// active reports whether the line was lit for at least a quarter of the
// window: solid or blinking.
func (p pattern) active() bool { return p.lit*4 >= p.window }

// ledPattern returns how the named line behaved in [to-window, to].
func (n *node) ledPattern(name string, to time.Time, window time.Duration) pattern {
	n.t.Helper()
	line, ok := n.img.lines[name]
	if !ok {
		n.t.Fatalf("hil: no line %q in board %s", name, boardName)
	}
	from := to.Add(-window)
	p := pattern{window: window}
	level, last := 0, from
	for _, e := range n.ledEvents() {
		if e.line != line || e.at.After(to) {
			continue
		}
		if e.at.Before(from) {
			level = e.level
			continue
		}
		if level == 1 {
			p.lit += e.at.Sub(last)
		}
		if e.level != level {
			p.changes++
		}
		level, last = e.level, e.at
	}
	if level == 1 {
		p.lit += to.Sub(last)
	}
	p.on = level == 1
	return p
}

// leds describes all named lines over the window, for failure messages.
func (n *node) leds(to time.Time, window time.Duration) string {
	parts := []string{"role=" + n.roleLight(to, window)}
	for _, name := range []string{"led-role-green", "led-role-red", "led-failover"} {
		if _, ok := n.img.lines[name]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", strings.TrimPrefix(name, "led-"), n.ledPattern(name, to, window)))
		}
	}
	return strings.Join(parts, " ")
}

// roleLight is what the bicolour role LED showed over the window, named as
// panel.Light names it ("green solid", "amber slow-blink", "off").
func (n *node) roleLight(to time.Time, window time.Duration) string {
	g := n.ledPattern("led-role-green", to, window)
	r := n.ledPattern("led-role-red", to, window)
	gs, rs := g.String(), r.String()
	switch {
	case gs == "off" && rs == "off":
		return "off"
	case rs == "off":
		return "green " + gs
	case gs == "off":
		return "red " + rs
	case gs == rs:
		return "amber " + gs
	}
	return fmt.Sprintf("mixed(green %s, red %s)", gs, rs)
}

// waitRoleLight waits until the role LED shows want over the last window.
func (n *node) waitRoleLight(want panel.Light, timeout time.Duration) {
	n.t.Helper()
	const window = 3 * time.Second
	n.waitLEDs(want.String(), window, timeout, func(at time.Time) bool {
		return n.roleLight(at, window) == want.String()
	})
}

// waitFailoverLED waits until the failover LED shows want over the last window.
func (n *node) waitFailoverLED(want panel.Pattern, timeout time.Duration) {
	n.t.Helper()
	const window = 3 * time.Second
	n.waitLEDs("failover "+want.String(), window, timeout, func(at time.Time) bool {
		return n.ledPattern("led-failover", at, window).String() == want.String()
	})
}

// waitLEDs waits until cond holds for the lines over the last window.
func (n *node) waitLEDs(what string, window, timeout time.Duration, cond func(at time.Time) bool) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		now := time.Now()
		if cond(now) {
			return
		}
		if now.After(deadline) {
			n.t.Fatalf("hil: %s: LEDs not %s after %v: %s", n.spec.name, what, timeout, n.leds(now, window))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
