// Package hil is the QEMU hardware-in-the-loop pair: two emulated arm64 boards
// (main and spare) booting the real pairguard binary from an initramfs built of
// the same files the Buildroot package installs, joined by LAN 1 and LAN 2
// bridges in a network namespace, with a client on LAN 1.
//
// run.sh builds the image and runs the scenarios (`make hil`). The tests in
// this package skip, printing why, unless PAIRGUARD_HIL_IMAGE names a built
// image directory and they run as root.
//
// Layout of a run: each test gets test/hil/.cache/runs/<Test>/<board>/ with
// the board's serial console log (con.log), its LED trace (trace.log, one line
// per PL061 output change), the console and monitor sockets, the per-board
// drive and the SD card image; they are kept after the run for inspection.
package hil
