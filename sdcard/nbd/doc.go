// Package nbd is Pairguard's NBD server: it exports one [Backend] (the
// datastore, later behind the mirror's write path) to the kernel's NBD
// client and to user-space clients, written from the NBD protocol document
// (NetworkBlockDevice/nbd, doc/proto.md).
//
// # Protocol subset
//
// Handshake: fixed newstyle only (no oldstyle, no TLS). The server sends
// NBD_FLAG_FIXED_NEWSTYLE and NBD_FLAG_NO_ZEROES; a client flag other than
// NBD_FLAG_C_FIXED_NEWSTYLE and NBD_FLAG_C_NO_ZEROES ends the connection.
// Options answered:
//
//   - NBD_OPT_GO and NBD_OPT_INFO: NBD_INFO_EXPORT always, NBD_INFO_NAME and
//     NBD_INFO_DESCRIPTION when asked, NBD_INFO_BLOCK_SIZE when asked or
//     when the minimum block size is above 1; then NBD_REP_ACK. An export
//     name other than "" or [Options.Name] gets NBD_REP_ERR_UNKNOWN,
//     malformed data NBD_REP_ERR_INVALID.
//   - NBD_OPT_EXPORT_NAME (for old clients), with the 124 zero bytes unless
//     NBD_FLAG_C_NO_ZEROES; an unknown name closes the connection.
//   - NBD_OPT_LIST: one NBD_REP_SERVER, then NBD_REP_ACK.
//   - NBD_OPT_ABORT: NBD_REP_ACK, then close.
//   - anything else (STARTTLS, STRUCTURED_REPLY, the meta contexts,
//     EXTENDED_HEADERS, unknown): NBD_REP_ERR_UNSUP, and haggling goes on.
//     During shutdown every option gets NBD_REP_ERR_SHUTDOWN.
//
// Option data over 8 KiB is discarded and answered NBD_REP_ERR_TOO_BIG
// (over 1 MiB, or for EXPORT_NAME, the connection is closed).
//
// Transmission: simple replies only (no structured replies, so no
// BLOCK_STATUS). Flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, CAN_MULTI_CONN,
// and SEND_TRIM and SEND_WRITE_ZEROES on a writable export, READ_ONLY on
// a read-only one. Commands: READ, WRITE (+FUA), FLUSH, TRIM, WRITE_ZEROES
// (+NO_HOLE, +FUA), DISC. FUA is a [Backend.Flush] after the command.
// Requests run concurrently (up to [Options.MaxInFlight] per connection)
// and are answered in the order they finish; the cookie pairs them up. A
// request that finds nothing else in flight runs in the goroutine that
// read it (a client at queue depth 1 costs no hand-over); one that takes
// over a millisecond there has another goroutine read on behind it.
// Validation, in this order:
//
//   - a flag other than FUA (and NO_HOLE on WRITE_ZEROES): EINVAL
//   - CACHE, BLOCK_STATUS, RESIZE, unknown commands: EINVAL
//   - WRITE, TRIM, WRITE_ZEROES on a read-only export: EPERM
//   - READ or WRITE longer than the maximum payload: EINVAL (a WRITE
//     payload over 32 MiB closes the connection: it cannot be trusted)
//   - past the end: ENOSPC for WRITE and WRITE_ZEROES, EINVAL for READ and
//     TRIM (offset+length computed without overflow)
//   - offset or length not a multiple of the minimum block size: EINVAL
//   - FLUSH with a nonzero offset or length: EINVAL
//
// Backend errors map to ENOSPC (ENOSPC, EDQUOT, EFBIG), EPERM, ENOMEM,
// EINVAL, or EIO. A wrong request magic closes the connection. DISC
// answers what is in flight, then closes.
//
// # Shutdown
//
// [Server.Shutdown] closes the listeners and connections still haggling;
// a connection in transmission answers new requests with ESHUTDOWN, and
// is closed when its last request in flight has been answered. A kernel
// connection ([Server.ServeTransmission]) gets no ESHUTDOWN, which would
// fail the I/O under a mounted filesystem: the server stops reading it,
// answers what it has started, and closes; the kernel resends the rest
// on the sockets of the next RECONFIGURE (within its dead-connection
// timeout).
//
// # The kernel
//
// The kernel's client does no handshake: the attach driver (drivers/nbd)
// hands it the export size and [Server.Flags] over netlink, and the
// server's end of each socket pair goes to [Server.ServeTransmission].
package nbd
