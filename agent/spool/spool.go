// Package spool is the receipt printer's queue: one owner of the printer, jobs printed one
// after another, and what happens when the printer stops part-way.
//
// A job that stops because of the printer (paper out, cover open, a printer error, offline)
// is kept: a "print.stopped" event goes up, the spooler watches the real-time status until
// the printer can print again, sends "print.resumed" and resumes the job from the element
// the printer last confirmed — the driver cleared what was half-sent, so every element
// prints exactly once. A printer that went away or stopped answering is waited for the same
// way, but then nobody knows what it printed meanwhile (a printer with its own power goes
// on printing its buffer with the cable out), so whatever part of it is on the paper is
// marked and cut off, and the job is printed again from the start: the customer gets one
// whole receipt. A job fails only when it cannot be printed
// as built, when it was cancelled, when the printer stays unusable longer than
// Options.MaxWait, or when it keeps failing without progress.
//
// Between jobs the spooler reads the status now and then, so that a roll running low or a
// cover left open is reported ("printer.status" events) before the next receipt needs it.
//
// Jobs live in memory: a receipt that must survive a power cut is kept by whoever made it
// (the payment batch) and submitted again.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/posagent/posagent/drivers/escpos"
	"github.com/posagent/posagent/drivers/serial"
)

// Printer is what the spooler needs of a printer driver; *escpos.Printer has it.
type Printer interface {
	Print(ctx context.Context, job *escpos.Job) error
	Resume(ctx context.Context, job *escpos.Job) error
	Status(ctx context.Context) (escpos.Status, error)
	LastStatus() (escpos.Status, time.Time)
}

// Event kinds queued on up/event.
const (
	// EventStopped: a job stopped and waits for the printer {job, name, reason, done, total}.
	EventStopped = "print.stopped"
	// EventResumed: the printer can print again; the job goes on {job, name, done, total}.
	EventResumed = "print.resumed"
	// EventFailed: a job was given up {job, name, reason, done, total}.
	EventFailed = "print.failed"
	// EventStatus: the printer's state changed between jobs or after one {state, previous}.
	EventStatus = "printer.status"
)

// Errors.
var (
	ErrQueueFull = errors.New("spool: print queue full")
	ErrCancelled = errors.New("spool: job cancelled")
	ErrStopped   = errors.New("spool: spooler stopped")
	// ErrGaveUp: the printer stayed unusable longer than MaxWait, or the job failed
	// repeatedly without progress.
	ErrGaveUp = errors.New("spool: gave up waiting for the printer")
)

// Options configure a Spooler. Only Printer is required.
type Options struct {
	Printer Printer
	// Event queues an up/event record; nil drops events.
	Event func(ctx context.Context, kind string, body map[string]any)
	// WaitPoll is how often the status is read while a job waits; default 1 s.
	WaitPoll time.Duration
	// IdlePoll is how often the status is read between jobs; default 60 s; negative: never.
	IdlePoll time.Duration
	// MaxWait is how long a stopped job waits for the printer before it fails; default 30 min.
	MaxWait time.Duration
	// Retries is how many times in a row a job may fail without printing one more element
	// while the printer says it is fine (silence, garbled replies) before it fails; default 3.
	Retries int
	// QueueLen bounds the jobs waiting to print; default 16.
	QueueLen int
	Logger   *slog.Logger
}

// State is where a job is.
type State string

// Job states.
const (
	Queued    State = "queued"
	Printing  State = "printing"
	Waiting   State = "waiting" // stopped; waits for the printer (Info.Reason says why)
	Done      State = "done"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Info is a job's state as seen from outside.
type Info struct {
	ID     uint64 `json:"id" cbor:"id"`
	Name   string `json:"name" cbor:"name"`
	State  State  `json:"state" cbor:"state"`
	Reason string `json:"reason,omitempty" cbor:"reason,omitempty"` // why it waits or failed
	Done   int    `json:"done" cbor:"done"`                         // elements printed
	Total  int    `json:"total" cbor:"total"`
}

// Ticket follows one submitted job.
type Ticket struct {
	id     uint64
	name   string
	job    *escpos.Job
	ctx    context.Context // cancelled by Cancel
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	info    Info
	err     error
	changed chan struct{} // closed and replaced on every change
}

// Info is the job's current state.
func (t *Ticket) Info() Info {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.info
}

// Changed is closed at the job's next change of state, reason or progress.
func (t *Ticket) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// Done is closed when the job finished, failed or was cancelled.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Err is why the job did not print (nil once done, or while it is not finished).
func (t *Ticket) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Wait waits for the end of the job and returns Err.
func (t *Ticket) Wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Cancel gives the job up: a queued or waiting job never prints; a printing one stops (the
// driver clears what was half-sent).
func (t *Ticket) Cancel() { t.cancel() }

func (t *Ticket) update(f func(*Info)) {
	t.mu.Lock()
	f(&t.info)
	t.info.Total = t.job.Len() // a line still open at Submit counts once the job is sealed
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

func (t *Ticket) finish(state State, reason string, err error) {
	t.update(func(i *Info) {
		i.State, i.Reason, i.Done = state, reason, t.job.Done()
	})
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
	t.cancel()
	close(t.done)
}

// Spooler prints jobs one at a time.
type Spooler struct {
	o   Options
	log *slog.Logger

	queue chan *Ticket

	mu      sync.Mutex
	nextID  uint64
	current *Ticket
	pending []*Ticket // queued, in order (mirrors the channel for Jobs)
	stopped bool
	state   string // last printer state reported ("" before the first status)
}

// New makes a spooler; nothing prints before Run.
func New(o Options) *Spooler {
	if o.WaitPoll <= 0 {
		o.WaitPoll = time.Second
	}
	if o.IdlePoll == 0 {
		o.IdlePoll = time.Minute
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 30 * time.Minute
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 16
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Spooler{o: o, log: o.Logger.With("svc", "spool"), queue: make(chan *Ticket, o.QueueLen)}
}

// Submit queues a job under a name for people ("receipt 000123", "test page"). A job built
// with a mistake is refused at once (its escpos.ErrBadJob).
func (s *Spooler) Submit(name string, job *escpos.Job) (*Ticket, error) {
	if err := job.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, ErrStopped
	}
	s.nextID++
	ctx, cancel := context.WithCancel(context.Background())
	t := &Ticket{id: s.nextID, name: name, job: job, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), changed: make(chan struct{}),
		info: Info{ID: s.nextID, Name: name, State: Queued, Total: job.Len()}}
	select {
	case s.queue <- t:
	default:
		cancel()
		return nil, fmt.Errorf("%w (%d jobs)", ErrQueueFull, s.o.QueueLen)
	}
	s.pending = append(s.pending, t)
	return t, nil
}

// Jobs are the job printing or waiting, then the queued ones.
func (s *Spooler) Jobs() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Info
	if s.current != nil {
		out = append(out, s.current.Info())
	}
	for _, t := range s.pending {
		out = append(out, t.Info())
	}
	return out
}

// Run prints until ctx ends; then every job left fails with ErrStopped.
func (s *Spooler) Run(ctx context.Context) error {
	defer s.drain()
	var idle <-chan time.Time
	if s.o.IdlePoll > 0 {
		tk := time.NewTicker(s.o.IdlePoll)
		defer tk.Stop()
		idle = tk.C
	}
	s.checkIdle(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-idle:
			s.checkIdle(ctx)
		case t := <-s.queue:
			s.mu.Lock()
			s.pending = s.pending[1:]
			s.current = t
			s.mu.Unlock()
			s.print(ctx, t)
			s.mu.Lock()
			s.current = nil
			s.mu.Unlock()
			if ctx.Err() != nil {
				return nil
			}
			if st, at := s.o.Printer.LastStatus(); !at.IsZero() {
				s.noteStatus(ctx, st)
			}
		}
	}
}

func (s *Spooler) drain() {
	s.mu.Lock()
	s.stopped = true
	left := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, t := range left {
		<-s.queue
		t.finish(Failed, "agent stopping", ErrStopped)
	}
}

// checkIdle reads the status between jobs. A printer that does not answer is reported by
// the device state (and device.gone), not here.
func (s *Spooler) checkIdle(ctx context.Context) {
	st, err := s.o.Printer.Status(ctx)
	if err != nil {
		s.log.Debug("printer status", "err", err)
		return
	}
	s.noteStatus(ctx, st)
}

// noteStatus sends a printer.status event when the printer's one-word state changed. The
// first status read is reported only when it is not "ok".
func (s *Spooler) noteStatus(ctx context.Context, st escpos.Status) {
	now := st.State()
	s.mu.Lock()
	prev := s.state
	s.state = now
	s.mu.Unlock()
	if now == prev || (prev == "" && now == "ok") {
		return
	}
	s.log.Info("printer state", "state", now, "previous", prev)
	s.event(ctx, EventStatus, map[string]any{"state": now, "previous": prev})
}

func (s *Spooler) event(ctx context.Context, kind string, body map[string]any) {
	if s.o.Event != nil {
		s.o.Event(ctx, kind, body)
	}
}

func (s *Spooler) jobEvent(ctx context.Context, kind string, t *Ticket, reason string) {
	body := map[string]any{"job": t.id, "name": t.name, "done": t.job.Done(), "total": t.job.Len()}
	if reason != "" {
		body["reason"] = reason
	}
	s.event(ctx, kind, body)
}

// print runs one job to its end.
func (s *Spooler) print(ctx context.Context, t *Ticket) {
	jctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(t.ctx, stop)()
	started, interrupted := false, false
	retries := 0
	for {
		if t.ctx.Err() != nil {
			t.finish(Cancelled, "cancelled", ErrCancelled)
			return
		}
		t.update(func(i *Info) { i.State, i.Reason, i.Done = Printing, "", t.job.Done() })
		before := t.job.Done()
		var err error
		if !started {
			if interrupted {
				if err := s.o.Printer.Print(jctx, interruptedMark()); err != nil {
					s.log.Warn("could not cut off an interrupted receipt", "err", err)
				}
			}
			err = s.o.Printer.Print(jctx, t.job)
			started = true
		} else {
			err = s.o.Printer.Resume(jctx, t.job)
		}
		if err == nil {
			t.finish(Done, "", nil)
			s.log.Info("printed", "job", t.id, "name", t.name, "elements", t.job.Len())
			return
		}
		switch {
		case ctx.Err() != nil:
			t.finish(Failed, "agent stopping", ErrStopped)
			return
		case t.ctx.Err() != nil:
			t.finish(Cancelled, "cancelled", ErrCancelled)
			return
		case errors.Is(err, escpos.ErrBadJob):
			s.fail(ctx, t, "bad job", err)
			return
		}
		reason, printerSaysWhy := stopReason(err)
		var je *escpos.JobError
		if !printerSaysWhy && errors.As(err, &je) && je.Sent {
			// What the printer did with what it was sent is unknown: print it all again.
			started, interrupted = false, true
		}
		if !printerSaysWhy {
			if t.job.Done() > before {
				retries = 0
			}
			retries++
			if retries > s.o.Retries {
				s.fail(ctx, t, reason, fmt.Errorf("%w: %d attempts without progress: %w", ErrGaveUp, retries, err))
				return
			}
		}
		s.log.Warn("print job stopped", "job", t.id, "name", t.name, "reason", reason, "done", t.job.Done(), "total", t.job.Len())
		t.update(func(i *Info) { i.State, i.Reason, i.Done = Waiting, reason, t.job.Done() })
		s.jobEvent(ctx, EventStopped, t, reason)
		if err := s.waitPrintable(ctx, t); err != nil {
			switch {
			case ctx.Err() != nil:
				t.finish(Failed, "agent stopping", ErrStopped)
			case t.ctx.Err() != nil:
				t.finish(Cancelled, "cancelled", ErrCancelled)
			default:
				s.fail(ctx, t, reason, err)
			}
			return
		}
		s.jobEvent(ctx, EventResumed, t, "")
	}
}

// interruptedMark ends the paper of a receipt that broke off, before it is printed again.
func interruptedMark() *escpos.Job {
	return escpos.NewJob().Align(escpos.Center).Line(InterruptedLine).Feed(2).Cut()
}

// InterruptedLine is printed under the part of a receipt that broke off.
const InterruptedLine = "*** PRINT INTERRUPTED ***"

func (s *Spooler) fail(ctx context.Context, t *Ticket, reason string, err error) {
	s.log.Error("print job failed", "job", t.id, "name", t.name, "reason", reason, "err", err)
	t.finish(Failed, reason, err)
	s.jobEvent(ctx, EventFailed, t, reason)
}

// waitPrintable reads the status every WaitPoll until the printer can print, the job is
// cancelled, ctx ends, or MaxWait passes. The reason shown follows the printer (paper out,
// then cover open while the roll is changed...).
func (s *Spooler) waitPrintable(ctx context.Context, t *Ticket) error {
	deadline := time.NewTimer(s.o.MaxWait)
	defer deadline.Stop()
	tk := time.NewTicker(s.o.WaitPoll)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.ctx.Done():
			return t.ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w for %v", ErrGaveUp, s.o.MaxWait)
		case <-tk.C:
		}
		st, err := s.o.Printer.Status(t.ctx)
		if err != nil {
			reason, _ := stopReason(err)
			s.setReason(t, reason)
			continue
		}
		s.noteStatus(ctx, st)
		if st.Printable() {
			return nil
		}
		reason, _ := stopReason(st.Err())
		s.setReason(t, reason)
	}
}

func (s *Spooler) setReason(t *Ticket, reason string) {
	if t.Info().Reason != reason {
		t.update(func(i *Info) { i.Reason = reason })
	}
}

// stopReason names why a job stopped, and whether the printer itself said so (a state to
// wait out) rather than failing to answer.
func stopReason(err error) (reason string, printerSaysWhy bool) {
	switch {
	case errors.Is(err, escpos.ErrPaperOut):
		return "paper-out", true
	case errors.Is(err, escpos.ErrCoverOpen):
		return "cover-open", true
	case errors.Is(err, escpos.ErrPrinterFault):
		return "error", true
	case errors.Is(err, escpos.ErrOffline):
		return "offline", true
	case serial.IsGone(err):
		return "gone", false
	case errors.Is(err, escpos.ErrTimeout):
		return "no-answer", false
	case errors.Is(err, escpos.ErrProtocol):
		return "garbled", false
	}
	return "error", false
}
