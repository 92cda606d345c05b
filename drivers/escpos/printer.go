package escpos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/drivers/serial"
)

// Options configure a Printer. Only Model is required.
type Options struct {
	Model Model
	// Baud is the line rate; writes are paced to it (10 bits per byte) so that no more than
	// Window bytes are ever ahead of the wire, and an XOFF stops the flow within that many
	// bytes. 0 disables pacing: only for links that pace themselves (USB printers).
	Baud int
	// Window is how many bytes may be queued ahead of the wire; default 128. Window plus one
	// write (32 bytes) must stay below the free space at which the printer sends XOFF, or an
	// XOFF comes too late and the printer loses data.
	Window int
	// Timeout bounds one exchange (a status request, a buffer clear, a write); default 1 s.
	Timeout time.Duration
	// PollInterval: during a job, how long without progress before the real-time status is
	// read to find out why; default 500 ms.
	PollInterval time.Duration
	// StallTimeout: how long a job may make no progress while the printer reports itself
	// fine before the job fails with ErrTimeout; default 10 s.
	StallTimeout time.Duration
	// CheckpointBytes: a confirmation is asked after an element only once this many bytes
	// were sent since the last one (and always after the last element). 0, the default,
	// confirms every element, so a resumed job prints every element exactly once; larger
	// values save line time (11 bytes per confirmation) at the price of reprinting up to that
	// many bytes' worth of elements on resume.
	CheckpointBytes int
	Logger          *slog.Logger
}

// Printer drives one ESC/POS printer over a serial port. Its methods may be called from any
// goroutine; they run one at a time.
type Printer struct {
	port serial.Port
	opt  Options
	log  *slog.Logger

	mu   sync.Mutex // one exchange with the printer at a time
	id   int        // last process ID used
	line pacer

	// unsure: a job broke off without the printer hearing the end of it (device gone, a
	// write that never returned), so its buffer may hold part of that job; the next job
	// clears it first.
	unsure bool

	lastMu sync.Mutex
	last   Status
	lastAt time.Time

	stats struct {
		jobs, failed, sent, garbage, xoff, polls atomic.Int64
	}
}

// Stats are the driver's counters.
type Stats struct {
	Jobs        int64 // jobs printed to the end
	JobsFailed  int64 // jobs stopped (paper, cover, errors, timeouts, device gone)
	BytesSent   int64
	Garbage     int64 // bytes from the printer that made no sense (noise, corruption)
	XOFF        int64 // XOFF received
	StatusPolls int64
}

// New makes a printer on port. The port should not do XON/XOFF itself (no IXON): the driver
// handles flow control, because it must still send real-time requests while the printer
// holds the flow off.
func New(port serial.Port, opt Options) (*Printer, error) {
	if opt.Model.Dots == 0 {
		return nil, errNoModel
	}
	if err := opt.Model.validate(); err != nil {
		return nil, err
	}
	if opt.Window <= 0 {
		opt.Window = 128
	}
	if opt.Timeout <= 0 {
		opt.Timeout = time.Second
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = 500 * time.Millisecond
	}
	if opt.StallTimeout <= 0 {
		opt.StallTimeout = 10 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	p := &Printer{port: port, opt: opt, log: opt.Logger.With("device", "printer", "model", opt.Model.Name)}
	if opt.Baud > 0 {
		p.line.byteTime = 10 * time.Second / time.Duration(opt.Baud)
		p.line.window = time.Duration(opt.Window) * p.line.byteTime
	}
	return p, nil
}

// Model is the printer model the driver was configured with.
func (p *Printer) Model() Model { return p.opt.Model }

// Stats returns the counters.
func (p *Printer) Stats() Stats {
	return Stats{
		Jobs: p.stats.jobs.Load(), JobsFailed: p.stats.failed.Load(), BytesSent: p.stats.sent.Load(),
		Garbage: p.stats.garbage.Load(), XOFF: p.stats.xoff.Load(), StatusPolls: p.stats.polls.Load(),
	}
}

// LastStatus is the most recent status read (by Status, or before and after a job) and when.
func (p *Printer) LastStatus() (Status, time.Time) {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	return p.last, p.lastAt
}

func (p *Printer) setLast(s Status) {
	p.lastMu.Lock()
	p.last, p.lastAt = s, time.Now()
	p.lastMu.Unlock()
}

// Status reads the real-time status.
func (p *Printer) Status(ctx context.Context) (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.open()
	if err != nil {
		return Status{}, err
	}
	defer s.close()
	return s.pollStatus(ctx)
}

// Print prints job from its first element. It checks the status first (ErrPaperOut,
// ErrCoverOpen... before anything is sent), streams the job, and returns only when the
// printer has confirmed the last element; then it reads the status again (LastStatus).
//
// If the printer stops part-way (paper out, cover open, error, silence, device gone,
// context), Print clears the printer's buffers — nothing half-sent prints later on its own —
// and returns a *JobError saying how many elements were printed; the job keeps that
// progress for Resume.
func (p *Printer) Print(ctx context.Context, job *Job) error {
	job.Rewind()
	return p.run(ctx, job)
}

// Resume prints what is left of a job that stopped: from element job.Done() on, after
// ESC @ and with the styles each element needs.
func (p *Printer) Resume(ctx context.Context, job *Job) error {
	if job.Complete() {
		return nil
	}
	return p.run(ctx, job)
}

func (p *Printer) run(ctx context.Context, job *Job) error {
	job.seal()
	if err := job.check(p.opt.Model); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	total := len(job.elems)
	sent := false
	fail := func(err error, st Status) error {
		p.stats.failed.Add(1)
		var se *stopError
		if errors.As(err, &se) {
			err, st = se.cause, se.status
		}
		return &JobError{Err: err, Done: job.done, Total: total, Status: st, Sent: sent}
	}
	s, err := p.open()
	if err != nil {
		return fail(err, Status{})
	}
	defer s.close()

	st, err := s.pollStatus(ctx)
	if err != nil {
		return fail(err, Status{})
	}
	if err := st.Err(); err != nil {
		return fail(err, st)
	}
	if p.unsure {
		// Whatever of the broken-off job is still in the printer must not print now.
		if err := s.clear(ctx); err != nil {
			p.log.Warn("could not clear the printer's buffers after a broken-off job", "err", err)
		}
		p.unsure = false
	}

	s.confirmed = job.done
	sent = true
	err = s.stream(ctx, job)
	job.done = s.confirmedElems()
	if err != nil {
		if serial.IsGone(err) || errors.Is(err, errBroken) {
			p.unsure = true
		} else {
			// Leave nothing half-sent in the printer: it would print it by itself once the
			// paper is in, and Resume sends it again.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*p.opt.Timeout)
			if cerr := s.clear(cctx); cerr != nil {
				p.log.Warn("could not clear the printer's buffers after a stop", "err", cerr)
				p.unsure = true
			}
			cancel()
			job.done = s.confirmedElems()
		}
		p.log.Info("print job stopped", "done", job.done, "total", total, "err", err)
		return fail(err, Status{})
	}
	p.stats.jobs.Add(1)
	if _, err := s.pollStatus(ctx); err != nil {
		p.log.Debug("status after the job", "err", err) // the job itself was confirmed
	}
	return nil
}

// nextID is the next process ID, 0..9999.
func (p *Printer) nextID() int {
	p.id = (p.id + 1) % 10000
	return p.id
}

// --- the line model -------------------------------------------------------------------------

// pacer models the wire: lineEnd is when everything written so far will have left.
type pacer struct {
	byteTime time.Duration // 0: unpaced
	window   time.Duration
	lineEnd  time.Time
}

// delay is how long to wait before writing more.
func (l *pacer) delay(now time.Time) time.Duration {
	if l.byteTime == 0 {
		return 0
	}
	return l.lineEnd.Sub(now) - l.window
}

func (l *pacer) wrote(now time.Time, n int) {
	if l.byteTime == 0 {
		return
	}
	if l.lineEnd.Before(now) {
		l.lineEnd = now
	}
	l.lineEnd = l.lineEnd.Add(time.Duration(n) * l.byteTime)
}

// backlog is how long until the bytes already written are on the printer's side.
func (l *pacer) backlog(now time.Time) time.Duration {
	if l.byteTime == 0 || l.lineEnd.Before(now) {
		return 0
	}
	return l.lineEnd.Sub(now)
}

// --- sessions -------------------------------------------------------------------------------

// readSlice is the read timeout of the session reader: how quickly it notices the end of the
// session.
const readSlice = 20 * time.Millisecond

// chunk is the largest single write while streaming: about 2.8 ms of line at 115200.
const chunk = 32

var errBroken = errors.New("escpos: a write to the port did not return")

// session is one exchange with the printer: a reader goroutine classifying what the printer
// sends, and a writer goroutine so that a write stuck in the port cannot block the caller.
type session struct {
	p    *Printer
	port serial.Port

	quit       chan struct{}
	readerDone chan struct{}
	dead       chan struct{} // closed when the reader met a port error
	status     chan byte
	cleared    chan struct{}
	wake       chan struct{}
	wreq       chan []byte
	wres       chan error

	mu         sync.Mutex
	err        error // why the reader stopped
	broken     bool  // a write timed out
	xoff       bool
	xoffAt     time.Time
	pending    []pendingBarrier
	confirmed  int
	progressAt time.Time
	garbage    int64
}

type pendingBarrier struct{ id, elems int }

func (p *Printer) open() (*session, error) {
	if err := p.port.ResetInputBuffer(); err != nil {
		if serial.IsGone(err) {
			return nil, fmt.Errorf("escpos: %w", err)
		}
		p.log.Debug("reset input buffer", "err", err)
	}
	if err := p.port.SetReadTimeout(readSlice); err != nil {
		return nil, fmt.Errorf("escpos: %w", err)
	}
	s := &session{
		p: p, port: p.port,
		quit: make(chan struct{}), readerDone: make(chan struct{}), dead: make(chan struct{}),
		status: make(chan byte, 64), cleared: make(chan struct{}, 4), wake: make(chan struct{}, 1),
		wreq: make(chan []byte), wres: make(chan error, 1),
		progressAt: time.Now(),
	}
	go s.read()
	go s.writer()
	return s, nil
}

func (s *session) close() {
	close(s.quit)
	<-s.readerDone
	close(s.wreq) // a writer stuck in the port ends when the port returns
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) read() {
	defer close(s.readerDone)
	var rp replyParser
	buf := make([]byte, 256)
	for {
		select {
		case <-s.quit:
			return
		default:
		}
		n, err := s.port.Read(buf)
		for _, b := range buf[:max(n, 0)] {
			rp.feed(b, s.handle)
		}
		switch {
		case err == nil:
			if n == 0 {
				time.Sleep(readSlice) // a port breaking its contract must not make us spin
			}
		case errors.Is(err, serial.ErrTimeout):
		default:
			s.mu.Lock()
			s.err = fmt.Errorf("escpos: read: %w", err)
			s.mu.Unlock()
			close(s.dead)
			s.signal()
			return
		}
	}
}

func (s *session) handle(r reply) {
	switch r.kind {
	case replyXON:
		s.mu.Lock()
		s.xoff = false
		s.mu.Unlock()
		s.signal()
	case replyXOFF:
		s.p.stats.xoff.Add(1)
		s.mu.Lock()
		s.xoff, s.xoffAt = true, time.Now()
		s.mu.Unlock()
	case replyStatus:
		select {
		case s.status <- r.b:
		default:
		}
	case replyProcessID:
		s.mu.Lock()
		for i, b := range s.pending {
			if b.id == r.id {
				// The printer works in order: this answer confirms every barrier before it,
				// including any whose own answer was lost.
				s.confirmed = max(s.confirmed, b.elems)
				s.pending = s.pending[i+1:]
				s.progressAt = time.Now()
				break
			}
		}
		s.mu.Unlock()
		s.signal()
	case replyCleared:
		select {
		case s.cleared <- struct{}{}:
		default:
		}
	case replyGarbage:
		s.p.stats.garbage.Add(int64(r.n))
		s.mu.Lock()
		s.garbage += int64(r.n)
		s.mu.Unlock()
	}
}

func (s *session) writer() {
	for b := range s.wreq {
		_, err := s.port.Write(b)
		s.wres <- err
	}
}

// write sends b now, whatever the flow control says; a write that does not return within
// Timeout breaks the session.
func (s *session) write(ctx context.Context, b []byte) error {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken {
		return errBroken
	}
	now := time.Now()
	limit := s.p.opt.Timeout + s.p.line.backlog(now) + time.Duration(len(b))*s.p.line.byteTime
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case s.wreq <- b:
	case <-t.C:
		return s.breakSession()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-s.wres:
		if err != nil {
			return fmt.Errorf("escpos: write: %w", err)
		}
		s.p.line.wrote(time.Now(), len(b))
		s.p.stats.sent.Add(int64(len(b)))
		return nil
	case <-t.C:
		return s.breakSession()
	}
}

func (s *session) breakSession() error {
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	return fmt.Errorf("%w (%w)", ErrTimeout, errBroken)
}

// alive returns the reader's error or the context's.
func (s *session) alive(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.dead:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.err
	default:
		return nil
	}
}

// sleep waits d, or less if something happens.
func (s *session) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.wake:
	case <-s.dead:
	case <-ctx.Done():
	}
}

// --- status ---------------------------------------------------------------------------------

var statusRequest = []byte{dle, 0x04, 1, dle, 0x04, 2, dle, 0x04, 3, dle, 0x04, 4}

// pollStatus reads the four status bytes twice and believes them only if both reads agree:
// a noise byte can look like a status byte, but not the same one twice in the same place.
func (s *session) pollStatus(ctx context.Context) (Status, error) {
	s.p.stats.polls.Add(1)
	deadline := time.Now().Add(s.p.opt.Timeout + s.p.line.backlog(time.Now()))
	for attempt := 0; ; attempt++ {
		a, err := s.statusRound(ctx, deadline)
		if err != nil {
			return Status{}, err
		}
		b, err := s.statusRound(ctx, deadline)
		if err != nil {
			return Status{}, err
		}
		if a == b {
			st, err := DecodeStatus(a[:])
			if err == nil {
				s.p.setLast(st)
			}
			return st, err
		}
		if attempt == 3 {
			return Status{}, fmt.Errorf("%w: status reads disagree", ErrProtocol)
		}
	}
}

func (s *session) statusRound(ctx context.Context, deadline time.Time) ([4]byte, error) {
	var out [4]byte
	for drained := false; !drained; {
		select {
		case <-s.status:
		default:
			drained = true
		}
	}
	s.mu.Lock()
	garbage := s.garbage
	s.mu.Unlock()
	if err := s.write(ctx, statusRequest); err != nil {
		return out, err
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for i := range out {
		select {
		case out[i] = <-s.status:
		case <-t.C:
			s.mu.Lock()
			garbled := s.garbage > garbage
			s.mu.Unlock()
			if garbled {
				return out, fmt.Errorf("%w: no valid status in time, garbage instead", ErrProtocol)
			}
			return out, ErrTimeout
		case <-s.dead:
			return out, s.alive(ctx)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// clear empties the printer's receive and print buffers (DLE DC4 fn=8) and waits for its
// answer, which also comes after every reply to what was cleared away.
func (s *session) clear(ctx context.Context) error {
	if s.p.opt.Model.NoClearBuffers {
		if err := s.write(ctx, []byte{dle, 0x05, 2}); err != nil {
			return err
		}
		s.sleep(ctx, s.p.line.backlog(time.Now())+50*time.Millisecond)
		return nil
	}
	if err := s.write(ctx, []byte{dle, 0x14, 8, 1, 3, 20, 1, 6, 2, 8}); err != nil {
		return err
	}
	t := time.NewTimer(s.p.opt.Timeout + s.p.line.backlog(time.Now()))
	defer t.Stop()
	select {
	case <-s.cleared:
		return nil
	case <-t.C:
		return ErrTimeout
	case <-s.dead:
		return s.alive(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- streaming ------------------------------------------------------------------------------

func (s *session) confirmedElems() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmed
}

// stream sends the job from element job.done with a barrier after each element (or each
// CheckpointBytes), then waits until the printer has confirmed the last one.
func (s *session) stream(ctx context.Context, job *Job) error {
	cw := &chunkWriter{s: s, ctx: ctx}
	enc := newEncoder(cw, s.p.opt.Model)
	enc.init()
	total := len(job.elems)
	since := int64(0)
	for i := job.done; i < total && enc.err == nil; i++ {
		start := enc.n
		job.elems[i].encode(enc)
		since += enc.n - start
		if i == total-1 || since >= int64(s.p.opt.CheckpointBytes) {
			id := s.p.nextID()
			s.mu.Lock()
			s.pending = append(s.pending, pendingBarrier{id, i + 1})
			s.mu.Unlock()
			enc.barrier(id)
			since = 0
		}
	}
	enc.flush()
	if enc.err != nil {
		return enc.err
	}
	return s.waitConfirmed(ctx, total)
}

// chunkWriter sends the encoded stream in chunks, as flow control allows.
type chunkWriter struct {
	s   *session
	ctx context.Context
	buf [chunk]byte
	k   int
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m := copy(c.buf[c.k:], p[n:])
		c.k += m
		n += m
		if c.k == len(c.buf) {
			if err := c.Flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) Flush() error {
	if c.k == 0 {
		return nil
	}
	if err := c.s.waitSendable(c.ctx); err != nil {
		return err
	}
	if err := c.s.write(c.ctx, c.buf[:c.k]); err != nil {
		return err
	}
	c.k = 0
	return nil
}

// waitSendable waits until the printer can take more: not held off by XOFF, and the line
// not more than Window bytes behind. While waiting without progress it reads the status to
// learn whether the printer stopped (paper, cover, error: the job stops) or an XOFF was noise
// or is stale (the printer is fine and would repeat XOFF if its buffer were still full).
func (s *session) waitSendable(ctx context.Context) error {
	opt := s.p.opt
	lastPoll := time.Time{}
	for {
		if err := s.alive(ctx); err != nil {
			return err
		}
		now := time.Now()
		s.mu.Lock()
		xoff, xoffAt, progressAt := s.xoff, s.xoffAt, s.progressAt
		s.mu.Unlock()
		if xoff {
			quiet := min(now.Sub(xoffAt), now.Sub(progressAt))
			if quiet >= opt.PollInterval && now.Sub(lastPoll) >= opt.PollInterval {
				lastPoll = now
				if err := s.checkPrinter(ctx); err != nil {
					return err
				}
				if now.Sub(progressAt) >= opt.StallTimeout {
					return fmt.Errorf("%w: the printer holds the flow off and prints nothing", ErrTimeout)
				}
				s.mu.Lock()
				if s.xoffAt.Equal(xoffAt) {
					s.xoff = false
				}
				s.mu.Unlock()
				continue
			}
			s.sleep(ctx, opt.PollInterval-quiet)
			continue
		}
		if d := s.p.line.delay(now); d > 0 {
			s.sleep(ctx, d)
			continue
		}
		return nil
	}
}

// checkPrinter reads the status in the middle of a job and turns a stop into an error.
func (s *session) checkPrinter(ctx context.Context) error {
	st, err := s.pollStatus(ctx)
	if err != nil {
		return err
	}
	if err := st.Err(); err != nil {
		return &stopError{cause: err, status: st}
	}
	return nil
}

// waitConfirmed waits for the barrier after the last element. Without progress it reads the
// status; if the printer is fine it asks again with a fresh barrier, in case an answer was
// lost on the line.
func (s *session) waitConfirmed(ctx context.Context, total int) error {
	opt := s.p.opt
	waitStart := time.Now()
	lastPoll := waitStart
	for {
		if err := s.alive(ctx); err != nil {
			return err
		}
		now := time.Now()
		s.mu.Lock()
		confirmed, progressAt := s.confirmed, s.progressAt
		s.mu.Unlock()
		if confirmed >= total {
			return nil
		}
		since := now.Sub(progressAt)
		if w := now.Sub(waitStart); w < since {
			since = w
		}
		if since >= opt.PollInterval && now.Sub(lastPoll) >= opt.PollInterval {
			lastPoll = now
			if err := s.checkPrinter(ctx); err != nil {
				return err
			}
			if since >= opt.StallTimeout {
				return fmt.Errorf("%w: the printer did not confirm the job", ErrTimeout)
			}
			id := s.p.nextID()
			s.mu.Lock()
			s.pending = append(s.pending, pendingBarrier{id, total})
			s.mu.Unlock()
			var b [11]byte
			bw := &sliceSink{b: b[:0]}
			e := newEncoder(bw, s.p.opt.Model)
			e.barrier(id)
			if err := s.write(ctx, bw.b); err != nil {
				return err
			}
			continue
		}
		s.sleep(ctx, opt.PollInterval-since)
	}
}

// sliceSink collects a few encoded bytes.
type sliceSink struct{ b []byte }

func (s *sliceSink) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *sliceSink) Flush() error                { return nil }
