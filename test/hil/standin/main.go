// Command standin is a stand-in for pairguard used only while working on the
// hardware-in-the-loop harness itself (PAIRGUARD_HIL_STANDIN=1 test/hil/run.sh):
// `standin run --config FILE` prints a marker, lights the line named
// led-role-green and waits; `standin status` prints a fixed role line. The
// scenarios fail against it by design: they need the real daemon.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/warthog618/go-gpiocdev"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standin run --config FILE | status")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		fmt.Println("pairguard-standin: running")
		chip, off, err := gpiocdev.FindLine("led-role-green")
		if err != nil {
			fmt.Fprintln(os.Stderr, "standin:", err)
		} else if l, err := gpiocdev.RequestLine(chip, off, gpiocdev.AsOutput(1)); err != nil {
			fmt.Fprintln(os.Stderr, "standin:", err)
		} else {
			defer l.Close()
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	case "status":
		fmt.Println("role: standin")
	default:
		fmt.Fprintln(os.Stderr, "standin: unknown command", os.Args[1])
		os.Exit(2)
	}
}
