// Package ecrlog keeps the exchange log of the cash-register API: one JSON line per request
// and answer, card numbers masked and tokens redacted before anything reaches the disk, in a
// size-rotated file that the TMS can ask for (logs.upload, log "ecr") or receive on a
// schedule.
//
// Recording must never slow down or fail the cash register's request: Record formats the
// line in the caller's goroutine and hands it to a writer goroutine through a bounded queue.
// When the queue is full (a stalled disk) the line is dropped and counted rather than
// waited for.
package ecrlog

import (
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/logging"
)

// Entry is one exchange with a cash register.
type Entry struct {
	// Time is when the request arrived; optional. The line's own "time" is when Record was
	// called, so the file stays in time order for range reads.
	Time     time.Time
	Remote   string // the cash register's address
	ECR      string // registered cash register name (protected mode)
	Method   string
	Path     string
	Query    url.Values
	HTTP     int    // HTTP status
	Code     int    // the envelope's statusCode
	Response []byte // the JSON envelope sent
	Duration time.Duration
	// ProcessID names the payment or refund the exchange belongs to, when there is one.
	ProcessID string
}

// Options tune Open.
type Options struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // where lost lines are reported; default slog.Default()
}

// queueLen bounds the lines waiting for the disk. A line is at most a few tens of KiB (see
// format.go), usually well under one.
const queueLen = 256

// warnEvery limits how often lost lines are reported: a failing disk would otherwise flood
// the agent's own log with one warning per cash-register request.
const warnEvery = time.Minute

type queued struct {
	seq  uint64
	t    time.Time
	body []byte // the JSON object without "time"
}

// Log is an open exchange log. Safe for concurrent use.
type Log struct {
	file *logging.RotatingFile
	now  func() time.Time
	log  *slog.Logger

	// mu makes taking a line's time and queueing it one step, so that ReadRange can wait for
	// every line stamped before it was called.
	mu     sync.Mutex
	closed bool
	seq    uint64 // lines queued so far
	q      chan queued

	wmu     sync.Mutex
	wcond   *sync.Cond
	handled uint64 // seq of the last line the writer finished with
	stopped bool

	exited    chan struct{}
	closeOnce sync.Once
	closeErr  error

	lines, dropped, errors atomic.Uint64

	// Writer goroutine only.
	lastWarn      time.Time
	warnedDropped uint64
	warnedErrors  uint64
}

// Open opens (creating) the log at path, rotated at maxSize bytes with keep older files.
func Open(path string, maxSize int64, keep int, o Options) (*Log, error) {
	f, err := logging.OpenRotating(path, maxSize, keep)
	if err != nil {
		return nil, fmt.Errorf("ecrlog: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &Log{file: f, now: o.Now, log: o.Logger, q: make(chan queued, queueLen), exited: make(chan struct{})}
	l.wcond = sync.NewCond(&l.wmu)
	go l.write()
	return l, nil
}

// Record logs one exchange. It never blocks on the disk and never fails: a line that cannot
// be queued or written is counted (Stats) and reported in the agent's log at most once a
// minute.
func (l *Log) Record(e Entry) {
	body, err := format(e)
	if err != nil {
		l.errors.Add(1)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.q <- queued{seq: l.seq + 1, t: l.now(), body: body}:
		l.seq++
	default:
		l.dropped.Add(1)
	}
}

// ReadRange calls fn with every line whose "time" lies in [from, to), oldest first (zero
// leaves a side open). Every line recorded before the call is on disk before the reading
// starts, so a to not later than the call's start sees every line stamped before it: the
// scheduled upload relies on this to move its mark without losing a line.
func (l *Log) ReadRange(from, to time.Time, fn func(line []byte) error) error {
	l.mu.Lock()
	target := l.seq
	l.mu.Unlock()
	l.wmu.Lock()
	for l.handled < target && !l.stopped {
		l.wcond.Wait()
	}
	l.wmu.Unlock()
	return l.file.ReadRange(from, to, fn)
}

// Stats returns the lines written, the lines dropped (queue full or log closed) and the
// lines lost to errors since Open.
func (l *Log) Stats() (lines, dropped, errors uint64) {
	return l.lines.Load(), l.dropped.Load(), l.errors.Load()
}

// Close writes the queued lines and closes the file. Later Records are dropped; ReadRange
// still reads the file. Closing twice is harmless.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.q)
		l.mu.Unlock()
		<-l.exited
		l.closeErr = l.file.Close()
	})
	return l.closeErr
}

func (l *Log) write() {
	defer close(l.exited)
	var buf []byte
	for it := range l.q {
		// "time" first: logging.LineTime reads it by prefix without decoding the line.
		buf = append(buf[:0], `{"time":"`...)
		buf = it.t.UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `",`...)
		buf = append(buf, it.body[1:]...)
		buf = append(buf, '\n')
		n, err := l.file.Write(buf)
		if n == len(buf) {
			l.lines.Add(1)
		}
		if err != nil {
			// A failed rotation still writes the line; it is counted as an error all the same,
			// since the file is no longer bounded as configured.
			l.errors.Add(1)
		}
		l.warn(err)
		l.wmu.Lock()
		l.handled = it.seq
		l.wcond.Broadcast()
		l.wmu.Unlock()
	}
	l.wmu.Lock()
	l.stopped = true
	l.wcond.Broadcast()
	l.wmu.Unlock()
}

// warn reports lost lines, at most once per warnEvery.
func (l *Log) warn(err error) {
	dropped, errs := l.dropped.Load(), l.errors.Load()
	if dropped == l.warnedDropped && errs == l.warnedErrors {
		return
	}
	now := l.now()
	if !l.lastWarn.IsZero() && now.Sub(l.lastWarn) < warnEvery {
		return
	}
	args := []any{"dropped", dropped, "errors", errs}
	if err != nil {
		args = append(args, "err", err)
	}
	l.log.Warn("ecr exchange log is losing lines", args...)
	l.lastWarn, l.warnedDropped, l.warnedErrors = now, dropped, errs
}
