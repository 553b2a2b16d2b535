package control

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Section groups the commands in the usage text.
type Section uint8

const (
	sectionInvalid Section = iota
	SectionDaemon          // run the daemon or check its config
	SectionClient          // requests to a running daemon over the socket
	SectionLocal           // done by the binary alone
)

// Command is one entry of the command table. `pairguard`'s usage, the
// console's help and the daemon's dispatch all come from Commands, so a
// command cannot exist in one and be missing from another.
type Command struct {
	Name string
	Args string // the usage after the name, e.g. "[-n N] [--follow] [--json]"
	Help string // one line
	Section
	// Console: offered on the serial console.
	Console bool
	// Timeout is how long the client waits for the answer; 0 is
	// DefaultTimeout. A streaming request (log --follow) waits without end.
	Timeout time.Duration
	// flags declares the command's own flags; check validates them and
	// fills the request.
	flags func(fs *flag.FlagSet, inv *Invocation) func() error
}

// DefaultTimeout is how long a client waits for an answer.
const DefaultTimeout = 10 * time.Second

// Usage is the command's usage line, e.g. "log [-n N] [--follow] [--json]".
func (c Command) Usage() string {
	if c.Args == "" {
		return c.Name
	}
	return c.Name + " " + c.Args
}

// Sent reports whether the command is a request to the daemon.
func (c Command) Sent() bool { return c.Section == SectionClient }

// Invocation is a parsed client command line.
type Invocation struct {
	Req    Request
	Socket string
	JSON   bool
	Write  string // capture: the pcap file to write
}

// UsageError is a command line that does not parse.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return &UsageError{fmt.Errorf(format, args...)} }

// Commands is the command table, in the order of the usage text.
var Commands = []Command{
	{Name: "run", Args: "--config FILE [--log-level L]", Help: "run the daemon", Section: SectionDaemon},
	{Name: "check-config", Args: "FILE", Help: "check a config file and exit", Section: SectionDaemon, Console: true},
	{Name: "arbiter-key", Args: "[--config FILE]", Help: "print this pair's key for the arbiter's [[arbiter.pair]]", Section: SectionDaemon, Console: true},
	{Name: "status", Args: "[--json]", Help: "role, peer, data, mirror and alarms", Section: SectionClient, Console: true},
	{Name: "log", Args: "[-n N] [--follow] [--json]", Help: "the logbook's newest entries; --follow streams new ones, role and alarm changes",
		Section: SectionClient, Console: true,
		flags: func(fs *flag.FlagSet, inv *Invocation) func() error {
			n := fs.Int("n", 20, "entries")
			follow := fs.Bool("follow", false, "stream")
			fs.BoolVar(follow, "f", false, "stream")
			return func() error {
				if *n < 0 || *n > MaxEntries {
					return usagef("log: -n must be between 0 and %d", MaxEntries)
				}
				inv.Req.N, inv.Req.Follow = *n, *follow
				return nil
			}
		}},
	{Name: "is-primary", Help: "exit status 0 only on the primary (for scripts and cron jobs)", Section: SectionClient, Console: true},
	{Name: "swap", Help: "planned handover to the peer (on the primary)", Section: SectionClient, Console: true},
	{Name: "takeover", Args: "--force", Help: "become primary, overriding the guards", Section: SectionClient, Console: true,
		flags: func(fs *flag.FlagSet, inv *Invocation) func() error {
			force := fs.Bool("force", false, "force")
			return func() error {
				if !*force {
					return usagef("takeover needs --force: it overrides the split-brain guard and the data state")
				}
				inv.Req.Force = true
				return nil
			}
		}},
	{Name: "ack", Help: "acknowledge alarms and the failover LED", Section: SectionClient, Console: true},
	{Name: "sync", Help: "start a datastore resync round now", Section: SectionClient, Console: true},
	{Name: "verify", Help: "compare both datastores block by block", Section: SectionClient, Console: true, Timeout: 10 * time.Minute},
	{Name: "resolve", Args: "--keep-local|--discard-local", Help: "end a split brain, naming the side to keep",
		Section: SectionClient, Console: true, Timeout: 10 * time.Minute,
		flags: func(fs *flag.FlagSet, inv *Invocation) func() error {
			keep := fs.Bool("keep-local", false, "keep this node's data")
			discard := fs.Bool("discard-local", false, "keep the peer's data")
			return func() error {
				if *keep == *discard {
					return usagef("resolve needs exactly one of --keep-local or --discard-local")
				}
				inv.Req.Keep = KeepPeer
				if *keep {
					inv.Req.Keep = KeepLocal
				}
				return nil
			}
		}},
	{Name: "capture", Args: "-n N -w FILE", Help: "write the next N failover-line frames as pcap",
		Section: SectionClient, Console: true, Timeout: 10 * time.Minute,
		flags: func(fs *flag.FlagSet, inv *Invocation) func() error {
			n := fs.Int("n", 20, "frames")
			fs.StringVar(&inv.Write, "w", "", "pcap file")
			return func() error {
				if inv.Write == "" {
					return usagef("capture needs -w FILE")
				}
				if *n < 1 || *n > MaxCapture {
					return usagef("capture: -n must be between 1 and %d", MaxCapture)
				}
				inv.Req.N = *n
				return nil
			}
		}},
	{Name: "leds", Args: "test", Help: "walk every LED and colour", Section: SectionClient, Console: true, Timeout: time.Minute,
		flags: func(fs *flag.FlagSet, inv *Invocation) func() error {
			return func() error {
				if fs.NArg() != 1 || fs.Arg(0) != "test" {
					return usagef("leds: the only subcommand is test")
				}
				inv.Req.Test = true
				return nil
			}
		}},
	{Name: "pair", Args: "begin|join NNNN-NNNN|accept|reject|cancel",
		Help:    "teach in a pair: begin (main) prints a code, join CODE (spare), accept on both",
		Section: SectionClient, Console: true,
		flags: func(fs *flag.FlagSet, inv *Invocation) func() error {
			return func() error {
				if fs.NArg() < 1 || !slices.Contains(PairSteps, fs.Arg(0)) {
					return usagef("pair: say begin, join NNNN-NNNN, accept, reject or cancel")
				}
				inv.Req.Pair = fs.Arg(0)
				switch {
				case inv.Req.Pair == "join" && fs.NArg() != 2:
					return usagef("pair join needs the code the main shows: pair join NNNN-NNNN")
				case inv.Req.Pair == "join":
					inv.Req.Code = fs.Arg(1)
				case fs.NArg() != 1:
					return usagef("pair %s takes no further arguments", inv.Req.Pair)
				}
				return nil
			}
		}},
	{Name: "unpair", Help: "forget the peer (to teach in a replacement); the node keeps its role and data", Section: SectionClient, Console: true},
	{Name: "console", Args: "--tty DEV", Help: "these commands as a prompt on a serial console", Section: SectionLocal},
	{Name: "snapshot", Args: "-w FILE.tar.gz", Help: "collect status, logbook, config (keys redacted), a capture, versions, board, kernel and links", Section: SectionLocal},
	{Name: "version", Help: "print the version", Section: SectionLocal, Console: true},
	{Name: "help", Help: "this list", Section: SectionLocal, Console: true},
}

// Lookup finds a command by name.
func Lookup(name string) (Command, bool) {
	for _, c := range Commands {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// Parse parses the arguments of a client command (after its name): its
// own flags, --socket PATH (default socket) and --json.
func (c Command) Parse(args []string, socket string) (Invocation, error) {
	if !c.Sent() {
		return Invocation{}, usagef("%s is not a request to the daemon", c.Name)
	}
	inv := Invocation{Req: Request{Cmd: c.Name}}
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&inv.Socket, "socket", socket, "control socket")
	fs.BoolVar(&inv.JSON, "json", false, "print JSON")
	var check func() error
	if c.flags != nil {
		check = c.flags(fs, &inv)
	}
	if err := fs.Parse(args); err != nil {
		return Invocation{}, &UsageError{fmt.Errorf("%s: %w", c.Name, err)}
	}
	if check != nil {
		if err := check(); err != nil {
			return Invocation{}, err
		}
	} else if fs.NArg() > 0 {
		return Invocation{}, usagef("%s takes no arguments, not %q", c.Name, strings.Join(fs.Args(), " "))
	}
	if err := inv.Req.Check(); err != nil {
		return Invocation{}, &UsageError{err}
	}
	return inv, nil
}

// Usage is the usage text of `pairguard`.
func Usage() string {
	var b strings.Builder
	b.WriteString("usage: pairguard COMMAND [flags]\n")
	for _, s := range []struct {
		s     Section
		title string
	}{
		{SectionDaemon, "daemon:"},
		{SectionClient, "client (each takes --socket PATH, or PAIRGUARD_SOCKET):"},
		{SectionLocal, "local:"},
	} {
		fmt.Fprintf(&b, "\n%s\n", s.title)
		for _, c := range Commands {
			if c.Section == s.s {
				fmt.Fprintf(&b, "  %-30s %s\n", c.Usage(), c.Help)
			}
		}
	}
	return b.String()
}

// The values of Request.Keep.
const (
	KeepLocal = "local"
	KeepPeer  = "peer"
)

// PairSteps are the steps of `pair`, in the order an operator runs them.
var PairSteps = []string{"begin", "join", "accept", "reject", "cancel"}

// Limits of the requests' counts.
const (
	MaxEntries = 100000
	MaxCapture = 100000
)

var errBadRequest = errors.New("control: bad request")

// Check validates a request as the daemon receives it: a known client
// command and fields within their ranges and meant for it.
func (r Request) Check() error {
	c, ok := Lookup(r.Cmd)
	if !ok || !c.Sent() {
		return fmt.Errorf("%w: unknown command %q", errBadRequest, r.Cmd)
	}
	bad := func(field string) error {
		return fmt.Errorf("%w: %s: %s not allowed here", errBadRequest, r.Cmd, field)
	}
	switch {
	case r.N != 0 && r.Cmd != "log" && r.Cmd != "capture":
		return bad("n")
	case r.Follow && r.Cmd != "log":
		return bad("follow")
	case r.Force && r.Cmd != "takeover":
		return bad("force")
	case r.Keep != "" && r.Cmd != "resolve":
		return bad("keep")
	case r.Test && r.Cmd != "leds":
		return bad("test")
	case r.Pair != "" && r.Cmd != "pair":
		return bad("pair")
	case r.Code != "" && (r.Cmd != "pair" || r.Pair != "join"):
		return bad("code")
	}
	switch r.Cmd {
	case "log":
		if r.N < 0 || r.N > MaxEntries {
			return fmt.Errorf("%w: log: n %d out of range", errBadRequest, r.N)
		}
	case "capture":
		if r.N < 1 || r.N > MaxCapture {
			return fmt.Errorf("%w: capture: n %d out of range", errBadRequest, r.N)
		}
	case "takeover":
		if !r.Force {
			return fmt.Errorf("%w: takeover needs force", errBadRequest)
		}
	case "resolve":
		if r.Keep != KeepLocal && r.Keep != KeepPeer {
			return fmt.Errorf("%w: resolve: keep must be %q or %q", errBadRequest, KeepLocal, KeepPeer)
		}
	case "pair":
		if !slices.Contains(PairSteps, r.Pair) {
			return fmt.Errorf("%w: pair: step %q, want one of %v", errBadRequest, r.Pair, PairSteps)
		}
		if r.Pair == "join" && (r.Code == "" || len(r.Code) > 16) {
			return fmt.Errorf("%w: pair join needs a code", errBadRequest)
		}
	case "leds":
		if !r.Test {
			return fmt.Errorf("%w: leds: the only subcommand is test", errBadRequest)
		}
	}
	return nil
}
