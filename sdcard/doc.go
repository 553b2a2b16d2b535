// Package sdcard is the datastore mirror: block access to the SD-card
// partition (or an image file), per-block hashes, generation identifiers,
// the dirty bitmap, checksum- and bitmap-based resync, the receiver's
// journal and the TLS transport between the two nodes.
//
// # Layers
//
// The pure pieces have no clock, socket or goroutine: [Decide] (direction
// and split brain from generation identifiers), [DiffCoarse] and
// [DiffFine] (the resync planner), [Bitmap], and the wire messages in
// wire.go. Device I/O sits behind [BlockDevice]; [Device] is the real file
// or block device; sdcardtest holds the in-memory fake and the power-cut
// recorder of the crash tests. [Mirror] is the one
// driver: it owns the connection, runs rounds, and reports [Status] and
// [Event]s. The daemon drives it from its own loop.
//
// # Generations
//
// Each node keeps, in [Meta], a current generation identifier and a short
// history of earlier ones, as DRBD does. A node that becomes primary calls
// [Mirror.NewGeneration], and a primary that loses its peer calls
// [Mirror.LostPeer] (a new generation unless the peer is known to be
// behind already), so that a peer which took over meanwhile is found as a
// split brain on reconnection instead of being overwritten: the current
// identifier moves into the history and a fresh random one becomes current; the data state becomes
// up-to-date, because a primary's data is the truth by definition. When a
// round completes, the receiver adopts the sender's current identifier
// and history and becomes up-to-date. On connection both sides exchange
// their identifiers and [Decide] says who sends:
//
//   - equal: nothing to do from history; the primary still runs its
//     periodic scan rounds (the content of a primary changes without a new
//     generation);
//   - one side's current in the other's history: the newer side sends;
//   - neither: split brain, reported as mirror state split-brain and an
//     [EventSplitBrain]; no round runs until an operator calls
//     [Mirror.Resolve] naming the side to keep, or the configured
//     [SplitBrainPolicy] decides: discard-zero-changes lets a secondary
//     whose device still matches the digest of the last completed round
//     ([Meta].BaseSum) discard its generation; manual always waits.
//
// # A round
//
// The primary (the source) starts every round; a secondary never sends
// its data and a primary never accepts a round.
//
//	source                          target
//	RoundStart{mode, gen}    ──▶
//	                         ◀──    Hashes…, HashesEnd   (checksum mode only)
//	FineReq{blocks}          ──▶                          (per batch of differing blocks)
//	                         ◀──    FineHashes
//	Data / Zero records      ──▶    journalled
//	BlockSum                 ──▶    after a block's sub-block records (pairguard-mirror/3)
//	RoundEnd                 ──▶    journal commit, apply, meta saved
//	                         ◀──    Committed
//
// In bitmap mode (all writes since the last round went through
// [Mirror.WriteAt], so the dirty bitmap is exact) the coarse hash phase is
// skipped and the dirty blocks are the differing blocks. A target that
// never held data (no generation, inconsistent) gets a full round: every
// block streamed whole ([PlanStream]), without sums or fine requests,
// written in place at once (the journal would protect nothing) with
// O_DIRECT where the file system takes it (gathered writes from the
// frames the records were read into), and its digest taken from the
// records it received.
//
// A secondary's device changes only through the rounds it receives, so
// the block sums it computes at the end of a round (for the digest of the
// split-brain policy) are kept in the state directory (mirror.sums) and
// answer the next checksum round without reading the device. They are
// trusted only when the metadata says up-to-date in their generation with
// a base digest equal to theirs (a file left from an earlier round never
// matches), the device's change stamp ([Device.ChangeStamp]: an image's
// times, a block device's write counters) is unchanged, and fewer than 8
// rounds in a row used them. The source compares as its own scan (two
// goroutines) proceeds and sends the first differing blocks meanwhile.
// The fine sums of fine requests come from mirror.fine when it holds them
// for the content the round's coarse sum names (entries keyed by content,
// see fine.go), and the sums of blocks a round changed in part from the
// source's BlockSum records, so that such a round reads nothing from the
// target's device.
//
// Data records may be compressed with zstd ([Compression]) toward a peer
// that negotiated the TLS application protocol pairguard-mirror/2 or /3
// (/3 adds BlockSum records); an older peer negotiates none and gets
// plain records.
//
// # The journal
//
// The target appends every record of a round to a journal file in the
// state directory. At RoundEnd it writes a checksummed commit record with
// the new generation and fsyncs it, persists the data state inconsistent,
// applies the records to the device, fsyncs the device, saves the
// metadata (new generation, up-to-date) and only then truncates the
// journal. A committed journal is never truncated unapplied: an apply
// that fails leaves the node inconsistent and the next round (or the next
// start, which replays it before anything else) applies it first. An
// uncommitted journal is discarded, so the device holds the previous or
// the new round, or is marked inconsistent; TestCrashPoints checks this
// against modelled power cuts (sdcardtest's recorder).
//
// # Files
//
// session.go holds the connection and the exchanges both sides share;
// source.go the primary's side of a round, target.go the secondary's;
// plan.go the pure planner ([PlanRound], [PlanBlock], [PlanSubs]), tested
// against a naive model; health.go the device-failure watch that makes a
// card failing while running the fault datastore-missing. A round
// larger than the journal limit first marks the data inconsistent
// (persisted), then writes in place; such a node must not become primary
// until a later round completes.
package sdcard
