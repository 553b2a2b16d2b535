// Package console is pairguard's interactive prompt on a serial terminal
// (`pairguard console --tty DEV`): the control socket's client commands typed
// at a "pairguard> " prompt.
//
// The terminal is assumed dumb: no cursor addressing, only carriage return,
// line feed and backspace. Line editing therefore keeps the cursor at the end
// of the line:
//
//	Backspace, DEL, Ctrl-H  erase the last character
//	Ctrl-U                  erase the whole line
//	Ctrl-W                  erase the last word
//	Ctrl-C                  abandon the line; while a command runs, cancel it
//	Ctrl-D                  on an empty line: leave the console
//	Up, Down (ESC [ A/B)    walk the history of the last 50 lines
//	Ctrl-L                  redraw the line
//
// Other control characters and escape sequences (left/right arrows) are
// ignored. `help` lists the commands, `exit` or `quit` leaves. Everything
// else is split into words (single and double quotes group words) and handed
// to the run function, whose output is wrapped to 80 columns with CR LF line
// ends, since the terminal is in raw mode.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	pgcontrol "github.com/pairguard/pairguard/firmware/control"
)

// Prompt is printed before each line.
const Prompt = "pairguard> "

// Width is the terminal width output is wrapped to.
const Width = 80

// HistorySize is how many lines Up and Down can recall.
const HistorySize = 50

// Command is one entry of the help text.
type Command struct {
	Usage string // e.g. "status [--json]"
	Help  string // one line
}

// Commands are the commands listed by `help`: those of the command table
// (pgcontrol.Commands) offered on the console, then the console's own.
var Commands = consoleCommands()

func consoleCommands() []Command {
	var out []Command
	for _, c := range pgcontrol.Commands {
		if c.Console && c.Name != "help" {
			out = append(out, Command{c.Usage(), c.Help})
		}
	}
	return append(out,
		Command{"help", "this list"},
		Command{"exit, quit, Ctrl-D", "leave the console"})
}

// RunFunc runs one command with its arguments, writing its output to out.
// ctx is cancelled when the user presses Ctrl-C.
type RunFunc func(ctx context.Context, args []string, out io.Writer) error

// Control characters the line editor handles.
const (
	keyCtrlC     = 0x03
	keyCtrlD     = 0x04
	keyBackspace = 0x08
	keyLF        = 0x0a
	keyCtrlL     = 0x0c
	keyCR        = 0x0d
	keyCtrlU     = 0x15
	keyCtrlW     = 0x17
	keyEsc       = 0x1b
	keyDEL       = 0x7f
)

// Run runs the prompt on rw until the user leaves (nil), rw's input ends
// (nil on io.EOF, else the error) or ctx is done (ctx.Err()). A read that is
// pending when Run returns finishes in the background: close rw afterwards to
// end it. Input is read ahead, so what is typed after `exit` before the shell
// prompt returns may be consumed by the console.
func Run(ctx context.Context, rw io.ReadWriter, run RunFunc) error {
	in := make(chan readResult)
	stop := make(chan struct{})
	defer close(stop)
	go readLoop(rw, in, stop)
	c := &session{w: rw, in: in}
	return c.loop(ctx, run)
}

type readResult struct {
	b   []byte
	err error
}

// readLoop feeds the session with what r reads; each chunk is handed over
// before the next read, and it stops once stop is closed.
func readLoop(r io.Reader, in chan<- readResult, stop <-chan struct{}) {
	send := func(res readResult) bool {
		select {
		case in <- res:
			return true
		case <-stop:
			return false
		}
	}
	for {
		buf := make([]byte, 256)
		n, err := r.Read(buf)
		if n > 0 && !send(readResult{b: buf[:n]}) {
			return
		}
		if err != nil {
			send(readResult{err: err})
			return
		}
	}
}

type session struct {
	w       io.Writer
	in      <-chan readResult
	pending []byte // read but not yet consumed
	err     error  // the reader's error, once seen
	line    []byte
	history []string
	hpos    int    // index into history while walking it; len(history) = the new line
	saved   string // the new line while walking the history
	lastCR  bool   // the previous key was CR: a following LF is part of it
}

// next returns the next input byte.
func (c *session) next(ctx context.Context) (byte, error) {
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case r := <-c.in:
			c.pending, c.err = r.b, r.err
		}
	}
	b := c.pending[0]
	c.pending = c.pending[1:]
	return b, nil
}

func (c *session) write(s string) error {
	_, err := io.WriteString(c.w, s)
	return err
}

func (c *session) loop(ctx context.Context, run RunFunc) error {
	for {
		if err := c.write(Prompt); err != nil {
			return fmt.Errorf("console: %w", err)
		}
		line, err := c.readLine(ctx)
		switch {
		case errors.Is(err, errLeave), errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, errAbandon):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("console: %w", err)
		}
		args, err := Split(line)
		if err != nil {
			if err := c.write("error: " + err.Error() + "\r\n"); err != nil {
				return fmt.Errorf("console: %w", err)
			}
			continue
		}
		if len(args) == 0 {
			continue
		}
		c.remember(line)
		switch args[0] {
		case "exit", "quit":
			return nil
		case "help", "?":
			if err := c.help(); err != nil {
				return fmt.Errorf("console: %w", err)
			}
			continue
		}
		if err := c.runCommand(ctx, run, args); err != nil {
			return err
		}
	}
}

var (
	errLeave   = errors.New("console: leave")
	errAbandon = errors.New("console: line abandoned")
)

// readLine edits one line until Enter.
func (c *session) readLine(ctx context.Context) (string, error) {
	c.line = c.line[:0]
	c.hpos = len(c.history)
	for {
		b, err := c.next(ctx)
		if err != nil {
			return "", err
		}
		wasCR := c.lastCR
		c.lastCR = b == keyCR
		switch b {
		case keyCR, keyLF:
			if b == keyLF && wasCR {
				continue
			}
			return string(c.line), c.write("\r\n")
		case keyCtrlC:
			if err := c.write("^C\r\n"); err != nil {
				return "", err
			}
			return "", errAbandon
		case keyCtrlD:
			if len(c.line) == 0 {
				return "", errLeave
			}
		case keyBackspace, keyDEL:
			err = c.erase(1)
		case keyCtrlU:
			err = c.erase(utf8.RuneCount(c.line))
		case keyCtrlW:
			err = c.erase(lastWordRunes(c.line))
		case keyCtrlL:
			err = c.write("\r\n" + Prompt + string(c.line))
		case keyEsc:
			err = c.escape(ctx)
		default:
			if b < 0x20 {
				continue // other control characters
			}
			c.line = append(c.line, b)
			err = c.write(string([]byte{b}))
		}
		if err != nil {
			return "", err
		}
	}
}

// erase removes the last n runes of the line from the buffer and the screen.
// A line too long for one screen row is redrawn on a new row instead, since
// a dumb terminal cannot backspace to the previous row.
func (c *session) erase(n int) error {
	total := utf8.RuneCount(c.line)
	if n > total {
		n = total
	}
	if n == 0 {
		return nil
	}
	onOneRow := len(Prompt)+total < Width
	for i := 0; i < n; i++ {
		_, size := utf8.DecodeLastRune(c.line)
		c.line = c.line[:len(c.line)-size]
	}
	if !onOneRow {
		return c.write("\r\n" + Prompt + string(c.line))
	}
	return c.write(strings.Repeat("\b \b", n))
}

// replace shows s as the line being edited.
func (c *session) replace(s string) error {
	if err := c.erase(utf8.RuneCount(c.line)); err != nil {
		return err
	}
	c.line = append(c.line[:0], s...)
	return c.write(s)
}

// escape reads the rest of an escape sequence: ESC [ A, ESC O A (up) and
// B (down) walk the history; everything else is swallowed.
func (c *session) escape(ctx context.Context) error {
	b, err := c.next(ctx)
	if err != nil {
		return err
	}
	if b != '[' && b != 'O' {
		return nil
	}
	// Parameters, then the final byte (0x40-0x7e).
	for {
		if b, err = c.next(ctx); err != nil {
			return err
		}
		if b >= 0x40 && b <= 0x7e {
			break
		}
	}
	switch b {
	case 'A':
		if c.hpos == 0 {
			return nil
		}
		if c.hpos == len(c.history) {
			c.saved = string(c.line)
		}
		c.hpos--
		return c.replace(c.history[c.hpos])
	case 'B':
		if c.hpos >= len(c.history) {
			return nil
		}
		c.hpos++
		if c.hpos == len(c.history) {
			return c.replace(c.saved)
		}
		return c.replace(c.history[c.hpos])
	}
	return nil
}

func (c *session) remember(line string) {
	if n := len(c.history); n > 0 && c.history[n-1] == line {
		return
	}
	c.history = append(c.history, line)
	if len(c.history) > HistorySize {
		c.history = c.history[len(c.history)-HistorySize:]
	}
}

func (c *session) help() error {
	w := NewWrapper(c.w, Width)
	fmt.Fprintln(w, "Commands:")
	for _, cmd := range Commands {
		fmt.Fprintf(w, "  %-22s %s\n", cmd.Usage, cmd.Help)
	}
	return w.Flush()
}

// runCommand runs one command; Ctrl-C cancels it. Input typed while it runs
// (other than Ctrl-C) is kept for the next prompt.
func (c *session) runCommand(ctx context.Context, run RunFunc, args []string) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := NewWrapper(c.w, Width)
	done := make(chan error, 1)
	go func() { done <- run(cctx, args, w) }()
	var typed []byte
	interrupted := false
	var runErr error
wait:
	for {
		// Look at what is already buffered before reading more.
		for len(c.pending) > 0 {
			b := c.pending[0]
			c.pending = c.pending[1:]
			if b == keyCtrlC {
				interrupted = true
				cancel()
				continue
			}
			typed = append(typed, b)
		}
		var in <-chan readResult
		if c.err == nil {
			in = c.in
		}
		select {
		case runErr = <-done:
			break wait
		case r := <-in:
			c.pending, c.err = r.b, r.err
		case <-ctx.Done():
			runErr = <-done
			break wait
		}
	}
	c.pending = append(typed, c.pending...)
	// The run function is done with w: no concurrent writes from here on.
	if err := w.Flush(); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var msg string
	switch {
	case interrupted:
		msg = "^C interrupted\r\n"
	case runErr != nil:
		msg = "error: " + runErr.Error() + "\r\n"
	}
	if err := c.write(msg); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// lastWordRunes is how many runes Ctrl-W erases: trailing spaces and the
// word before them.
func lastWordRunes(line []byte) int {
	s := []rune(string(line))
	i := len(s)
	for i > 0 && s[i-1] == ' ' {
		i--
	}
	for i > 0 && s[i-1] != ' ' {
		i--
	}
	return len(s) - i
}

// ErrUnterminatedQuote is returned by Split for a line with an open quote.
var ErrUnterminatedQuote = errors.New("console: unterminated quote")

// Split splits a command line into words at spaces and tabs; single or double
// quotes group words, and a backslash outside single quotes takes the next
// character as it is.
func Split(line string) ([]string, error) {
	var (
		args  []string
		word  strings.Builder
		in    bool // inside a word
		quote rune
		esc   bool
	)
	for _, r := range line {
		switch {
		case esc:
			word.WriteRune(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc, in = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				args = append(args, word.String())
				word.Reset()
				in = false
			}
		default:
			word.WriteRune(r)
			in = true
		}
	}
	if quote != 0 || esc {
		return nil, ErrUnterminatedQuote
	}
	if in {
		args = append(args, word.String())
	}
	return args, nil
}
