package hil

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
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

func (p pattern) String() string {
	switch {
	case p.changes == 0 && p.on:
		return "solid"
	case p.changes == 0:
		return "off"
	case p.changes < 3:
		return fmt.Sprintf("changing(%d)", p.changes)
	}
	half := p.window / time.Duration(p.changes)
	switch {
	case half < 300*time.Millisecond:
		return "fast-blink"
	default:
		return "slow-blink"
	}
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
	var parts []string
	for _, name := range []string{"led-role-green", "led-role-red", "led-failover"} {
		if _, ok := n.img.lines[name]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", strings.TrimPrefix(name, "led-"), n.ledPattern(name, to, window)))
		}
	}
	return strings.Join(parts, " ")
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
