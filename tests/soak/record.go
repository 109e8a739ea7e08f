package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// A writer appends records to /data/FILE, one line each:
//
//	SEQ FILE MARKER PAD MD5
//
// SEQ counts from 1, MD5 is the hex MD5 of the line up to and including
// the space before it, with a newline (what `echo "$l" | md5sum` hashes).
// After each record is on the disk (sync) the writer prints "ack FILE SEQ"
// on its stdout, which docker keeps in the container's log: the records up
// to the last ack are acknowledged writes and must all be there. FILE is
// new at each start of the script (a restart-policy container starts it
// again), so one file has one writer.
//
// MARKER is a plaintext marker that must never be found on the raw disks or
// on the host's disk under the plugin's mount root.

// writerScript is the writer's shell (busybox sh); it stops cleanly on
// SIGTERM so that docker stop is quick, and says "writefail FILE SEQ" if a
// write or sync fails.
func writerScript(ctr, marker string) string {
	return `f=` + ctr + `-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n'); i=0; trap 'exit 0' TERM; ` +
		`while :; do i=$((i+1)); l="$i $f ` + marker + ` ` + pad + `"; s=$(echo "$l" | md5sum); ` +
		`if echo "$l ${s%% *}" >> /data/$f && sync; then echo "ack $f $i"; else echo "writefail $f $i"; sleep 3600; fi; sleep 2; done`
}

// pad makes a record about a hundred bytes.
const pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// Record renders record seq of file, as the writer writes it.
func Record(seq int, file, marker string) string {
	l := fmt.Sprintf("%d %s %s %s", seq, file, marker, pad)
	sum := md5.Sum([]byte(l + "\n"))
	return l + " " + hex.EncodeToString(sum[:]) + "\n"
}

// LogResult is what a log's verification found.
type LogResult struct {
	Valid int  // records 1..Valid are intact and in order
	Torn  bool // something follows the last intact record (a write cut short)
}

// VerifyLog checks a writer's log: every line is an intact record of this
// file, numbered 1, 2, ... in order, except that the very last line may be
// torn (unterminated or not matching its checksum) past the acknowledged
// records; and at least acked records are intact. Anything else is
// corruption or a lost acknowledged write.
func VerifyLog(data []byte, file string, acked int) (LogResult, error) {
	var res LogResult
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line, last := data, true
		if i >= 0 {
			line, last = data[:i], i == len(data)-1
			data = data[i+1:]
		} else {
			data = nil
		}
		err := checkRecord(string(line), file, res.Valid+1)
		if err == nil && (i >= 0) {
			res.Valid++
			continue
		}
		if err == nil {
			err = fmt.Errorf("no newline")
		}
		if !last {
			return res, fmt.Errorf("%s: record %d is corrupt (%v) and more follows", file, res.Valid+1, err)
		}
		// An intact record out of its place is not a write cut short.
		if f := strings.Split(string(line), " "); len(f) == 5 {
			if n, e := strconv.Atoi(f[0]); e == nil && f[1] == file && Record(n, file, f[2]) == string(line)+"\n" {
				return res, fmt.Errorf("%s: record %d follows record %d", file, n, res.Valid)
			}
		}
		res.Torn = true
	}
	if res.Valid < acked {
		return res, fmt.Errorf("%s: %d intact records, %d acknowledged (an acknowledged write is lost)", file, res.Valid, acked)
	}
	return res, nil
}

func checkRecord(line, file string, want int) error {
	f := strings.Split(line, " ")
	if len(f) != 5 {
		return fmt.Errorf("%d fields", len(f))
	}
	seq, err := strconv.Atoi(f[0])
	if err != nil || seq != want {
		return fmt.Errorf("sequence %q, want %d", f[0], want)
	}
	if f[1] != file {
		return fmt.Errorf("file %q, want %q", f[1], file)
	}
	if Record(seq, file, f[2]) != line+"\n" {
		return fmt.Errorf("checksum mismatch")
	}
	return nil
}

// Acks reads a writer container's log: the highest acknowledged record of
// each file, and the files whose writer saw a write fail.
func Acks(log string) (acked map[string]int, failed []string) {
	acked = map[string]int{}
	for _, l := range strings.Split(log, "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		switch f[0] {
		case "ack":
			acked[f[1]] = max(acked[f[1]], n)
		case "writefail":
			failed = append(failed, fmt.Sprintf("%s record %d", f[1], n))
		}
	}
	return acked, failed
}
