package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Defaults for Options.
const (
	DefaultMaxSize = 10 << 20
	DefaultKeep    = 5
)

// Options of a Log.
type Options struct {
	// Path of the current file; rotated files are Path.1 (newest) to
	// Path.Keep.
	Path string
	// Host is written in every record (the node name).
	Host string
	// MaxSize is the size in bytes past which the file is rotated before
	// the next record; 0 means DefaultMaxSize.
	MaxSize int64
	// Keep is how many rotated files are kept; 0 means DefaultKeep.
	Keep int
	// Sync makes every record durable (fsync) before Record returns.
	Sync bool
	// Anchor, when set, is given the chain's head when the log opens and
	// at each rotation of the file (anchor.go); nil: no anchoring.
	Anchor Anchor
}

// Log appends records to the trail. The zero value is not usable; see Open.
type Log struct {
	opts Options
	log  logrus.FieldLogger
	now  func() time.Time

	mu   sync.Mutex // guards the fields below
	f    *os.File
	size int64
	seq  uint64
	prev string
	// starts are the first record of each file kept, oldest first, the
	// current file last.
	starts []uint64
	sealer *sealer
}

// Open opens (or creates) the trail at opts.Path and continues its chain
// from the last record: the current file's, or the newest rotated file's
// when the current one is empty. A last line cut short by a crash (no
// newline at the end) was never complete: it is cut off and the fact is the
// first thing recorded.
func Open(opts Options, log logrus.FieldLogger) (*Log, error) {
	if opts.Path == "" || !filepath.IsAbs(opts.Path) {
		return nil, fmt.Errorf("audit file %q is not an absolute path", opts.Path)
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Keep == 0 {
		opts.Keep = DefaultKeep
	}
	if opts.MaxSize < 4096 || opts.Keep < 1 {
		return nil, fmt.Errorf("audit file: max size %d bytes and %d rotated files kept (allowed: at least 4096 bytes and 1 file)", opts.MaxSize, opts.Keep)
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	l := &Log{opts: opts, log: log, now: time.Now}
	torn, err := l.resume()
	if err != nil {
		return nil, err
	}
	if err := l.openCurrent(); err != nil {
		return nil, err
	}
	l.starts = l.readStarts()
	if torn > 0 {
		l.Record(Event{Op: "audit.repair", Detail: fmt.Sprintf("cut off an incomplete last line of %d bytes (a crash while writing it)", torn)})
	}
	if opts.Anchor != nil {
		l.sealer = startSealer(opts.Anchor, log)
		// What the files hold at start is anchored before anything is
		// added, so that a rewrite while the plugin was stopped shows.
		l.mu.Lock()
		if l.seq > 0 {
			l.sealer.submit(Head{Seq: l.seq, Hash: l.prev, First: l.starts[0], Current: l.starts[len(l.starts)-1]})
		}
		l.mu.Unlock()
	}
	return l, nil
}

// readStarts reads the first record's number of each file of the trail;
// an empty file starts with the next record. Only the current file can be
// empty, so the list is never empty once the current file exists.
func (l *Log) readStarts() []uint64 {
	files, _ := Files(l.opts.Path)
	starts := make([]uint64, 0, len(files)+1)
	for _, p := range files {
		if seq, ok := firstSeq(p); ok {
			starts = append(starts, seq)
		} else if p == l.opts.Path {
			starts = append(starts, l.seq+1)
		}
	}
	if len(starts) == 0 {
		starts = append(starts, l.seq+1)
	}
	return starts
}

// firstSeq is the number of the first record of the file at p.
func firstSeq(p string) (uint64, bool) {
	f, err := os.Open(p)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 64<<10).ReadSlice('\n')
	if err != nil {
		return 0, false
	}
	var r Record
	if json.Unmarshal(line, &r) != nil || r.Seq == 0 {
		return 0, false
	}
	return r.Seq, true
}

// resume reads the chain's head from the files and cuts off a torn tail.
func (l *Log) resume() (torn int64, err error) {
	for _, p := range []string{l.opts.Path, l.opts.Path + ".1"} {
		last, n, err := lastLine(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("audit file %s: %w", p, err)
		}
		if n > 0 && p == l.opts.Path {
			if err := truncateTail(p, n); err != nil {
				return 0, fmt.Errorf("audit file %s: cutting off an incomplete last line: %w", p, err)
			}
			torn = n
		}
		if last == nil {
			continue
		}
		var r Record
		if err := json.Unmarshal(last, &r); err != nil || r.Hash == "" {
			return 0, fmt.Errorf("audit file %s: its last line is not an audit record; move the file aside to start a new trail (`cryptvol audit verify` shows what is wrong)", p)
		}
		l.seq, l.prev = r.Seq, r.Hash
		return torn, nil
	}
	return torn, nil
}

// lastLine returns the last complete line of the file at p (nil if none)
// and the length of an incomplete line after it.
func lastLine(p string) (last []byte, torn int64, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	// Records are a few hundred bytes; 64 KiB from the end holds the last.
	off := max(st.Size()-64<<10, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, 0, err
	}
	end := bytes.LastIndexByte(b, '\n')
	torn = int64(len(b) - end - 1)
	if end < 0 {
		return nil, torn, nil
	}
	start := bytes.LastIndexByte(b[:end], '\n') + 1
	return b[start:end], torn, nil
}

func truncateTail(p string, n int64) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	return os.Truncate(p, st.Size()-n)
}

func (l *Log) openCurrent() error {
	f, err := os.OpenFile(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Record appends e to the trail and logs it. A record that cannot be
// written is logged as an error and still takes its place in the chain, so
// that Verify shows the gap where it is missing; the operation it records
// is not failed for it (volumes keep working with a full state disk).
func (l *Log) Record(e Event) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Record{Seq: l.seq + 1, Time: l.now().UTC(), Host: l.opts.Host, Op: e.Op, Volume: e.Volume, Tenant: e.Tenant, KeyID: e.KeyID,
		MountID: e.MountID, Detail: e.Detail, Result: ResultOK, Prev: l.prev}
	if e.Err != nil {
		r.Result, r.Error = ResultError, e.Err.Error()
	}
	var err error
	if r.Hash, err = r.sum(); err != nil {
		l.log.WithError(err).Error("audit: cannot encode a record")
		return
	}
	l.seq, l.prev = r.Seq, r.Hash
	fields := logrus.Fields{"audit_seq": r.Seq, "audit_hash": r.Hash, "audit_op": r.Op, "result": r.Result}
	for k, v := range map[string]string{"volume": r.Volume, "tenant": r.Tenant, "key_id": r.KeyID, "mount_id": r.MountID, "detail": r.Detail, "error": r.Error} {
		if v != "" {
			fields[k] = v
		}
	}
	l.log.WithFields(fields).Info("audit")
	if err := l.write(r); err != nil {
		l.log.WithError(err).WithField("audit_seq", r.Seq).Error("audit: record not written; `cryptvol audit verify` will show the gap")
	}
}

func (l *Log) write(r Record) error {
	line, err := r.line()
	if err != nil {
		return err
	}
	if l.f != nil && l.size > 0 && l.size+int64(len(line)) > l.opts.MaxSize {
		if err := l.rotate(r); err != nil {
			return fmt.Errorf("rotating %s: %w", l.opts.Path, err)
		}
	}
	if l.f == nil {
		if err := l.openCurrent(); err != nil {
			return err
		}
	}
	// One write per line on an O_APPEND file: lines never interleave.
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err == nil && l.opts.Sync {
		err = l.f.Sync()
	}
	return err
}

// rotate renames Path.(k-1) to Path.k down to Path to Path.1, dropping the
// oldest, starts a new current file for next, and anchors the head: the
// record before next, which ends the file just rotated.
func (l *Log) rotate(next Record) error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	for k := l.opts.Keep; k >= 1; k-- {
		from := l.opts.Path
		if k > 1 {
			from += "." + strconv.Itoa(k-1)
		}
		if err := os.Rename(from, l.opts.Path+"."+strconv.Itoa(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	l.starts = append(l.starts, next.Seq)
	if len(l.starts) > l.opts.Keep+1 {
		l.starts = l.starts[len(l.starts)-l.opts.Keep-1:]
	}
	if l.sealer != nil {
		l.sealer.submit(Head{Seq: next.Seq - 1, Hash: next.Prev, First: l.starts[0], Current: next.Seq})
	}
	return l.openCurrent()
}

// Close closes the file, and hands the anchor the head still waiting,
// if any, before it returns.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	s := l.sealer
	l.sealer = nil
	var err error
	if l.f != nil {
		err = l.f.Close()
		l.f = nil
	}
	l.mu.Unlock()
	if s != nil {
		s.stop()
	}
	return err
}

// Files lists the trail's files at path that exist, oldest first: the
// rotated ones (path.N, highest N first), then the current one.
func Files(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	type rotated struct {
		n int
		p string
	}
	var rs []rotated
	for _, m := range matches {
		if n, err := strconv.Atoi(strings.TrimPrefix(m, path+".")); err == nil && n > 0 {
			rs = append(rs, rotated{n, m})
		}
	}
	slices.SortFunc(rs, func(a, b rotated) int { return b.n - a.n })
	var out []string
	for _, r := range rs {
		out = append(out, r.p)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

// globEscape quotes the pattern characters of a path.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scanLines calls fn with each line of r (without the newline) and its
// number; a last line without a newline is passed with complete false.
func scanLines(r io.Reader, fn func(n int, line []byte, complete bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			if ferr := fn(n, line, complete); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
