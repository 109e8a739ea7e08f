// Package audit owns cryptvol's audit trail (issue 13): one JSON line per
// key operation and per volume state change, appended to a file that is
// rotated by size, and each line chained to the one before it by a SHA-256
// hash, so that a line deleted, inserted or edited anywhere but at the very
// end is found by Verify (`cryptvol audit verify`). Every line also goes to
// the log with its sequence number and hash: a copy of the chain's head
// kept apart from the file, for what the chain alone cannot show (lines cut
// off the end, or the whole file rewritten from the start).
//
// A line never carries key material: Event has no field for it, and the
// callers give key ids, volume names, mount ids and error texts, which
// carry none (package volume's rule).
//
// Files: log.go (Log: append, rotate, reopen), record.go (the line and its
// hash), verify.go (Verify).
//
// Concurrency: a Log is safe for concurrent use; records are written in
// the order Record is called, one at a time. Verify works on files only.
package audit
