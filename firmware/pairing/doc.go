// Package pairing is the pure core of Pairguard's teach-in: the one-time
// code, a password-authenticated key exchange bound to that code and to both
// node ids, the approval on both units, the settings the spare adopts from
// the main, and the record both persist. It has no goroutines, sockets or
// clocks: the daemon feeds it events (Step) and ticks (Tick) carrying the
// monotonic time, and carries out the actions it returns.
//
// # The exchange
//
// The main opens a window (Begin) and shows a code NNNN-NNNN drawn
// uniformly from 10^8 with crypto/rand. The operator types it on the spare
// (Join). Four messages follow on the failover line, each the payload of a
// PAIR-HELLO frame:
//
//	spare → all    hello   spare id, nonce S
//	main  → spare  share   main id, nonce M, MSGa = lv(Ya) lv(ADa)
//	spare → main   reply   MSGb = lv(Yb) lv(ADb), Tb = tag over MSGb
//	main  → spare  finish  Ta = tag over MSGa, R
//
// This is CPace (draft-irtf-cfrg-cpace, suite CPACE-RISTR255-SHA512, package
// cpace) in the initiator-responder setting with the draft's explicit key
// confirmation. Its inputs are bound as follows:
//
//   - PRS, the password, is the code's eight digits;
//   - CI, the channel identifier, is lv("pairguard pairing v1") lv(main id)
//     lv(spare id): both node ids, in their roles;
//   - sid is nonce S || nonce M, 16 fresh random bytes from each side;
//   - ADa is the main's node name, software version, ed25519 identity key,
//     pair-level settings and SHA-256(R) for a fresh 32-byte nonce R; ADb
//     the spare's name, version and key.
//
// The generator g = one_way_map(SHA-512(DSI, PRS, CI, sid)) is secret to
// whoever knows the code. Each side sends Y = y·g for a fresh scalar y and
// computes K = y·Y_peer; ISK = SHA-512(lv(DSI_ISK) lv(sid) lv(K) MSGa MSGb).
// The tags are HMAC-SHA512 under SHA-512("CPaceMac" || ISK). Because the
// transcript MSGa MSGb carries both ADs, a confirmed exchange also
// authenticates both identity keys, the node names and versions and the
// settings: the keys are pinned from data the other side proved to hold
// the same ISK for. From the ISK, HKDF-SHA512 (salt sid) derives the pair
// key ("pairguard pair key v1", 32 bytes) and the key of the Accept and
// Reject tags; from ISK || R it derives a six-digit check number both
// units show.
//
// # Why there is no offline guessing
//
// An eavesdropper sees Ya = ya·g and Yb = yb·g for an unknown g. For a
// candidate code c it can compute g_c, but to test c it needs the ISK, that
// is K = ya·yb·g, a Diffie-Hellman value of two shares it did not make;
// in a prime-order group where discrete logarithms are hard, Ya and Yb are
// indistinguishable from random elements whatever c is (CPace's security
// proof, Abdalla-Haase-Hesse 2021, under the sCDH/sSDH assumptions, with g
// from a hash modelled as a random oracle). The recorded tags are MACs
// keyed by that ISK, so they confirm nothing without it: a transcript is
// as useless with the right code as with a wrong one (TestEavesdropper).
//
// An active attacker can play one side with a code c it guesses. Impersonating
// the spare, it computes Yb from g_c; the main's K = ym·Yb equals what the
// attacker can compute only if g_c = g, i.e. c is the code, so it cannot
// produce a valid Tb otherwise, and the main answers a bad Tb with an Abort
// that carries nothing derived from K. Impersonating the main, it sends Ya
// from g_c and learns from the spare's Tb whether c was right, and nothing
// more: testing a second code c' would need ya·yb·g_c' from Yb = yb·g, again
// a Diffie-Hellman problem. So every exchange is worth exactly one guess,
// 1 in 10^8.
//
// The code is then burned so that those single guesses do not add up: a
// main whose exchange fails confirmation (wrong code, tampered message, an
// Abort from the spare) forgets the code and closes the window, so a guess
// against the main costs the window; a window starts at most MaxExchanges
// exchanges (one per MinGap at most) and closes after the last one times
// out, which bounds exchanges an attacker opens and abandons (they teach
// it nothing: the main sends no tag before it has checked the spare's);
// it expires after Window (default 5 minutes). A new window draws a new
// code. The spare forgets the code when its join ends, however it ends. An
// attacker therefore gets one guess per window the operator opens and one
// per join, each right with probability 10^-8, and a failed guess is
// visible: the window closes and the logbook says why.
//
// # The check number
//
// Someone who knows the code (read over the engineer's shoulder) can sit
// between the units and run two exchanges, posing as the spare to the main
// and as the main to the spare, with copied names and node ids. Both
// units then reach pending, but the two exchanges have two ISKs, so they
// show different check numbers; the engineer compares the two displays
// before accepting (TestRelayWithTheCode). Six digits from the ISK alone
// could be ground: posing as the spare, the attacker chooses its share
// after seeing the main's and could try a million scalars until the main's
// number equals the one the spare shows. The number therefore also
// depends on R, which the main commits to in ADa (inside the confirmed
// transcript) and reveals only in the finish, after the spare's share is
// fixed; posing as the main, the attacker commits before the honest spare
// picks its fresh share. Either way the numbers match with probability
// 10^-6.
//
// A third unit on the line cannot join without the code. With CI carrying
// both node ids, messages cannot be relayed between exchanges with other
// node ids: a spare and a main that disagree about who is who derive
// different generators and fail confirmation. A man in the middle that
// changes any byte of MSGa or MSGb changes the ISK on one side and fails
// confirmation too (the main then burns its code). Only after confirmation
// does either side show the peer and the check number, and only after an
// operator accepts on each unit do they persist anything; both must
// accept, and a refusal or timeout on one side, authenticated with the
// session key, makes the other forget what it stored.
//
// ADa and ADb travel in the clear: names, versions, public keys and the
// main's settings are not secret on the pair's own failover line; what the
// exchange guarantees is that both sides saw the same ones.
//
// What this does not protect against: denial of service by anyone on the
// failover line (forged Aborts and Hellos can close a window; the operator
// opens another), and a compromised unit.
//
// # Usage
//
// The daemon owns the only loop. It calls Step for commands (Begin, Join,
// Accept, Reject, Cancel, Unpair) and for each decoded message (Received),
// and Tick every few hundred milliseconds. It carries out the returned
// actions in order:
//
//   - Persist: write the Record (drivers/durable: write, fsync, rename)
//     before the next action, which is the Send of this side's Accept: a
//     node tells its peer it is paired only once it is on disk. On failure,
//     Step(PersistFailed): the peer is told and forgets too.
//   - Forget: delete the record durably before the next action.
//   - Send: put Msg in a PAIR-HELLO frame, broadcast when To is 0, else to
//     the MAC address the daemon last saw node To's frames come from. An
//     unpaired node has no pair key, so these frames cannot carry the
//     heartbeat's HMAC; the messages authenticate themselves (CPace and
//     the session tags), and a receiver hands every decodable one to Step.
//   - StateChanged, then Log: after the actions that made the state true.
//
// A command the state does not allow returns an error (ErrRole, ErrState)
// for the client; a message that does not fit is dropped silently, as a
// frame on a shared line may be for someone else.
package pairing
