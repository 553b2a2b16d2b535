package sdcard

import "github.com/pairguard/pairguard/sdcard/sdcardtest"

// The in-memory device of the tests.
type MemDevice = sdcardtest.MemDevice

var NewMemDevice = sdcardtest.NewMemDevice
