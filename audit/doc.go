// Package audit owns cryptvol's audit trail: one JSON line per key
// operation and per volume state change, appended to a file that is
// rotated by size, each line chained to the one before it by a SHA-256
// hash, and the chain's head anchored outside the host. Verify
// (`cryptvol audit verify`) reads a line only if it is exactly what the
// plugin writes, and finds a line deleted, inserted, reordered or edited
// anywhere but at the very end. The chain is unkeyed, so whoever can write
// the files can rewrite them from any record on with new hashes; against
// the heads an Anchor holds (package keys: objects on the KMIP server,
// written when the log opens and at each rotation of the file, never on a
// volume operation's path) Verify also finds such a rewrite, records cut
// off the end, and files removed from the beginning, up to the latest
// head. An anchoring that fails loses no record and blocks nothing: it is
// logged, and the next head covers its records. Every record also goes to
// the log with its sequence number and hash.
//
// A line never carries key material: Event has no field for it, and the
// callers give key ids, volume names, mount ids and error texts, which
// carry none (package volume's rule). A head carries numbers and a hash.
//
// Files: log.go (Log: append, rotate, reopen), record.go (the line, its
// hash and its strict reading), anchor.go (Head, Anchor, the background
// sealer), verify.go (Verify, Report), anchorcheck.go (the trail against
// the heads).
//
// Concurrency: a Log is safe for concurrent use; records are written in
// the order Record is called, one at a time, and heads are handed to the
// Anchor on one goroutine of the Log's, which Close waits for. Verify
// works on files and calls the Anchor once.
package audit
