package panel

import "github.com/pairguard/pairguard/board"

// Wiring returns the board output behind each channel, for the daemon to
// open with drivers/led (skipping led.ErrNotFitted, logging other errors as
// warnings) into Outputs.
func Wiring(l board.LEDs) map[Channel]board.Output {
	return map[Channel]board.Output{
		ChannelRoleRed:   l.RoleRed,
		ChannelRoleGreen: l.RoleGreen,
		ChannelRoleAmber: l.RoleAmber,
		ChannelFailover:  l.Failover,
	}
}
