// Package online is the datastore's online replication (DESIGN.md,
// "Online replication"): the write path that the NBD server exports on
// the primary ([Primary], an nbd.Backend over the local device), and the
// secondary that applies the primary's stream ([Secondary]), over TLS 1.3
// with the pair key pinned ([Dialer], [Listen]).
//
// # The write path
//
// A WRITE (or WRITE_ZEROES) on the primary, in this order:
//
//  1. its 4 MiB extents are made active in the activity log: an extent
//     not active yet costs one log transaction, shared by every writer
//     waiting at that moment (the batch). A transaction that evicts the
//     least recently used idle extents first syncs the device (the
//     evicted extents' writes are durable), writes their dirty bits to
//     the bitmap file and syncs it, then writes the next 4 KiB slot of
//     the log's ring and syncs it. A write that enters a new extent right
//     after one written just before (a sequential stream) brings the next
//     extents (up to 8, a quarter of the log at most) into the same
//     transaction, so a stream pays one transaction, and one device sync,
//     per several extents instead of per 4 MiB;
//  2. it waits for writes overlapping it to finish locally, so both
//     sides see overlapping writes in the same order;
//  3. with a peer it is numbered and queued for the peer (the queue's
//     order is the order of the stream); without one its 4 KiB blocks
//     are marked in the dirty bitmap;
//  4. it is written to the local device;
//  5. in sync mode it waits for the peer's acknowledgement (the peer
//     applied it), at most failover-time: a peer that does not answer is
//     dropped, and every record it had not acknowledged becomes dirty;
//  6. before it is acknowledged without the peer (no peer, dropped, or
//     async), a new generation is persisted if one is due: one is due
//     from the start and after every loss of the peer, so a peer that
//     takes over meanwhile finds a split brain instead of being
//     overwritten (the mirror's rule, with sdcard's [sdcard.Meta]).
//
// A FLUSH syncs the local device and, with a peer, sends a flush after
// every write before it; in sync mode it is acknowledged once the peer
// synced too (so a FUA write, which the NBD server turns into a write
// and a flush, is durable on both). In async mode the write is
// acknowledged after the local write; the queue to the peer is bounded
// (MaxQueue). A write that finds it full waits for room, at most
// failover-time (then the peer is dropped), in sync mode and, by default,
// in async mode too: the peer only lags and stays consistent. With
// PullAhead (on-congestion = "pull-ahead") an async write that finds it
// full is not held back by the line: it is only marked dirty and the
// peer falls behind (DRBD's pull-ahead, its Ahead/Behind states): a
// Resync record makes the secondary inconsistent (it would otherwise hold
// later writes without earlier ones), and from then on every write is
// only marked, none streamed, until the resync sent every marked block
// and queued its Done, which makes the secondary consistent again (writes
// after the Done are streamed behind it). The resync is throttled like
// DRBD's c-min-rate: while the application wrote at 4 MiB/s or more in
// the last 100 to 200 ms it sends 1 MiB/s (records of 128 KiB), and at
// full speed once the application is slower or quiet, so a burst costs
// neither the line's nor the TLS's CPU while it lasts, and the peer
// catches up after it. The constants and their reasons are in pace.go.
// A drain (swap) lifts the throttle and waits for the Done.
// A TRIM is
// done as a WRITE_ZEROES (in records of at most 8 MiB, zeroed through
// [ZeroRanger] where the device has it): the copies stay the same, which
// a hint done on one side only, or a discard whose result the card
// chooses, would not guarantee.
//
// # What is resynced
//
// On every attach the primary sends the dirty blocks: the bitmap (blocks
// written without the peer, or not acknowledged by it), plus every block
// of the active extents (writes the secondary had applied but not synced
// when it lost power can only be there), or every block when the
// secondary's generation is not the one the bitmap is relative to (it
// missed a generation, or never had data). The secondary is
// inconsistent from Start until Done, then takes the primary's
// generation, up to date. After a power cut the primary reopens with the
// persisted bitmap plus its active extents dirty: only the hot extents
// travel again (TestCrashPoints checks this against modelled power cuts).
//
// A node whose data is inconsistent refuses to become primary
// ([ErrInconsistent]); a peer whose generation is newer, or diverged, is
// refused ([ErrRefused]) and never overwritten.
//
// # Files in the state directory
//
// mirror.meta (sdcard's metadata: generations, data state, the
// generation the bitmap is relative to), online.al (the activity log:
// 8 slots of 4 KiB, the newest valid one in force), online.bitmap (one
// bit per 4 KiB block, written extent by extent as extents leave the
// log, cleared when a resync completes).
package online
