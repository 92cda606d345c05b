package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/transfer"
)

// Client defaults.
const (
	// DefaultWindow is how many requests of BlockSize may be outstanding.
	DefaultWindow = 4
	// DefaultStall is how long without progress before the client asks again from the next
	// byte it needs.
	DefaultStall = 10 * time.Second
)

// Publisher sends a request payload on up/blob/{transferID} (the link, in the agent).
type Publisher interface {
	PublishBlob(ctx context.Context, transferID string, payload []byte) error
}

// ServerError is the error text of an answer: the server cannot serve the transfer. It reaches
// the transfer wrapped as permanent.
type ServerError struct {
	TransferID string
	Msg        string
}

func (e *ServerError) Error() string { return "blob: transfer " + e.TransferID + ": server: " + e.Msg }

// ErrReplaced is returned by a reader whose transfer was opened again by someone else.
var ErrReplaced = errors.New("blob: transfer opened again")

// Stats counts what the client did since it was made.
type Stats struct {
	Requests   uint64 // requests published
	Blocks     uint64 // answers used
	Bytes      uint64 // data bytes used
	Duplicates uint64 // answers for bytes already had, or too far ahead to keep
	Dropped    uint64 // answers dropped because the transfer's queue was full
	Stale      uint64 // answers for no open transfer
	Malformed  uint64 // answers that did not decode
	Reasks     uint64 // stalls after which the window was asked again
}

// Client pulls files over MQTT. Deliver is fed by the link; each transfer reads through a
// Source. Window and Stall may be changed before the first Source is opened.
type Client struct {
	Window int
	Stall  time.Duration

	pub Publisher
	log *slog.Logger
	seq atomic.Uint64

	mu     sync.Mutex
	active map[string]*reader

	requests, blocks, bytes, duplicates, dropped, stale, malformed, reasks atomic.Uint64
}

// NewClient makes a client publishing its requests through pub.
func NewClient(pub Publisher, logger *slog.Logger) *Client {
	if logger == nil {
		logger = slog.Default()
	}
	return &Client{Window: DefaultWindow, Stall: DefaultStall, pub: pub, log: logger.With("svc", "blob"),
		active: make(map[string]*reader)}
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Blocks: c.blocks.Load(), Bytes: c.bytes.Load(),
		Duplicates: c.duplicates.Load(), Dropped: c.dropped.Load(), Stale: c.stale.Load(),
		Malformed: c.malformed.Load(), Reasks: c.reasks.Load()}
}

// Deliver hands over one down/blob payload. It never waits: when the transfer's queue is full
// the answer is dropped (and counted); the transfer's stall timer asks for it again. The
// payload is kept, so the caller must not reuse it.
func (c *Client) Deliver(transferID string, payload []byte) {
	c.mu.Lock()
	r := c.active[transferID]
	c.mu.Unlock()
	if r == nil {
		c.stale.Add(1)
		return
	}
	select {
	case r.in <- payload:
	default:
		c.dropped.Add(1)
	}
}

// Source is the file of transferID, size bytes long, as a transfer.Source. One reader per
// transfer id is served at a time: opening it again ends the previous reader.
func (c *Client) Source(transferID string, size int64) transfer.Source {
	return &source{c: c, tid: transferID, size: size}
}

type source struct {
	c    *Client
	tid  string
	size int64
}

func (s *source) Open(ctx context.Context, off int64) (io.ReadCloser, error) {
	if err := ValidID(s.tid); err != nil {
		return nil, transfer.Permanent(err)
	}
	if s.size <= 0 || off < 0 || off > s.size {
		return nil, transfer.Permanent(fmt.Errorf("blob: offset %d of a %d-byte file", off, s.size))
	}
	c := s.c
	window := c.Window
	if window <= 0 {
		window = DefaultWindow
	}
	stall := c.Stall
	if stall <= 0 {
		stall = DefaultStall
	}
	r := &reader{c: c, ctx: ctx, tid: s.tid, size: uint64(s.size), next: uint64(off), requested: uint64(off),
		window: uint64(window), stall: stall,
		// Room for a window of answers and as many duplicates after a re-ask.
		in:      make(chan []byte, 4*window),
		evicted: make(chan struct{})}
	c.mu.Lock()
	if old := c.active[s.tid]; old != nil {
		close(old.evicted)
	}
	c.active[s.tid] = r
	c.mu.Unlock()
	return r, nil
}

// reader assembles one transfer's answers in order. It is used by one goroutine.
type reader struct {
	c       *Client
	ctx     context.Context
	tid     string
	size    uint64
	window  uint64
	stall   time.Duration
	in      chan []byte
	evicted chan struct{}

	next      uint64  // offset of the first byte not yet handed out (after cur)
	cur       []byte  // data ready to hand out, ending at next
	requested uint64  // requests cover [.., requested)
	ahead     []Block // answers beyond next, kept for later
	timer     *time.Timer
	closed    bool
}

func (r *reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("blob: read after close")
	}
	for len(r.cur) == 0 {
		if r.next >= r.size {
			return 0, io.EOF
		}
		if r.useAhead() {
			break
		}
		if err := r.ask(); err != nil {
			return 0, err
		}
		if err := r.wait(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// ask keeps the window full.
func (r *reader) ask() error {
	for r.requested < r.size && r.requested < r.next+r.window*BlockSize {
		if n := r.kept(r.requested); n > 0 {
			// After a stall only what is missing is asked again.
			r.requested += n
			continue
		}
		req := Request{Offset: r.requested, Length: min(BlockSize, r.size-r.requested)}
		payload, err := EncodeRequest(r.tid, r.c.seq.Add(1), time.Now(), req)
		if err != nil {
			return err
		}
		if err := r.c.pub.PublishBlob(r.ctx, r.tid, payload); err != nil {
			if r.requested > r.next {
				// Requests are outstanding: wait for their answers; the window is filled
				// again after the next one (or after a stall).
				return nil
			}
			return fmt.Errorf("blob: request %d+%d of %s: %w", req.Offset, req.Length, r.tid, err)
		}
		r.c.requests.Add(1)
		r.requested += req.Length
	}
	return nil
}

// wait takes one answer, or asks again after a stall.
func (r *reader) wait() error {
	if r.timer == nil {
		r.timer = time.NewTimer(r.stall)
	}
	// An answer already queued wins over a stall timer that ran out meanwhile.
	select {
	case payload := <-r.in:
		return r.handle(payload)
	default:
	}
	select {
	case payload := <-r.in:
		return r.handle(payload)
	case <-r.timer.C:
		r.c.reasks.Add(1)
		r.c.log.Debug("blob transfer stalled; asking again", "transfer", r.tid, "offset", r.next)
		r.requested = r.next
		r.timer.Reset(r.stall)
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-r.evicted:
		return ErrReplaced
	}
}

func (r *reader) handle(payload []byte) error {
	b, err := DecodeBlock(payload)
	if err != nil {
		// Not the TMS's usual answer; the stall timer asks again if it was needed.
		r.c.malformed.Add(1)
		r.c.log.Warn("bad blob answer dropped", "transfer", r.tid, "err", err)
		return nil
	}
	if b.Error != "" {
		return transfer.Permanent(&ServerError{TransferID: r.tid, Msg: b.Error})
	}
	if b.Size != r.size {
		reason := manifest.ReasonTruncated
		if b.Size > r.size {
			reason = manifest.ReasonTooLarge
		}
		return &manifest.Error{Reason: reason, Err: fmt.Errorf("blob: server has %d bytes for transfer %s, expected %d", b.Size, r.tid, r.size)}
	}
	end := b.Offset + uint64(len(b.Data))
	switch {
	case end <= r.next:
		r.c.duplicates.Add(1)
	case b.Offset <= r.next:
		r.take(b)
	case b.Offset < r.next+r.window*BlockSize && len(r.ahead) < int(r.window) && !r.have(b.Offset):
		r.ahead = append(r.ahead, b)
	default:
		r.c.duplicates.Add(1)
	}
	return nil
}

// take makes the part of b from next on the current data; b must cover next.
func (r *reader) take(b Block) {
	r.cur = b.Data[r.next-b.Offset:]
	r.next = b.Offset + uint64(len(b.Data))
	r.c.blocks.Add(1)
	r.c.bytes.Add(uint64(len(r.cur)))
	if r.timer != nil {
		r.timer.Reset(r.stall)
	}
}

// have reports whether an answer at off is kept already.
func (r *reader) have(off uint64) bool { return r.kept(off) > 0 }

// kept is the length of the kept answer at off, 0 when there is none.
func (r *reader) kept(off uint64) uint64 {
	for _, b := range r.ahead {
		if b.Offset == off {
			return uint64(len(b.Data))
		}
	}
	return 0
}

// useAhead takes a kept answer that covers next, dropping the ones left behind.
func (r *reader) useAhead() bool {
	kept := r.ahead[:0]
	found := false
	for _, b := range r.ahead {
		end := b.Offset + uint64(len(b.Data))
		switch {
		case end <= r.next:
			r.c.duplicates.Add(1)
		case !found && b.Offset <= r.next:
			r.take(b)
			found = true
		default:
			kept = append(kept, b)
		}
	}
	clear(r.ahead[len(kept):])
	r.ahead = kept
	return found
}

func (r *reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.c.mu.Lock()
	if r.c.active[r.tid] == r {
		delete(r.c.active, r.tid)
	}
	r.c.mu.Unlock()
	r.ahead, r.cur = nil, nil
	return nil
}
