package store

import (
	"context"
	"errors"
	"sync"
)

// Committer groups concurrent writes into shared transactions: one fsync covers every write
// that was waiting when the previous commit finished. There is no artificial delay (bbolt's own
// Batch waits up to 10 ms for company), so a lone writer pays one fsync and a crowd shares one.
//
// A write function may run more than once: if any function in a group fails, the group is
// rolled back and each function is retried alone, so only the failing one reports its error.
// Functions must therefore only touch the transaction; effects outside it belong in
// tx.OnCommit.
type Committer struct {
	db   *DB
	reqs chan *commitReq
	once sync.Once
	done chan struct{}
	// exited is closed when the loop has returned: a request queued after its last drain is
	// never run, and its caller must hear so.
	exited chan struct{}
}

type commitReq struct {
	fn  func(*Tx) error
	err chan error
}

// maxGroup bounds how many writes share one transaction, so a flood cannot build a
// transaction large enough to spike memory.
const maxGroup = 512

// NewCommitter starts the commit loop; Close stops it.
func NewCommitter(db *DB) *Committer {
	c := &Committer{db: db, reqs: make(chan *commitReq, maxGroup), done: make(chan struct{}), exited: make(chan struct{})}
	go c.loop()
	return c
}

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("store: committer closed")

// Do runs fn in a writable transaction and returns once that transaction is durably committed
// (or failed). The context only bounds the wait to enter the queue: once queued, the write
// completes, because abandoning it half-way would leave the caller unsure whether it happened.
func (c *Committer) Do(ctx context.Context, fn func(*Tx) error) error {
	r := &commitReq{fn: fn, err: make(chan error, 1)}
	select {
	case c.reqs <- r:
	case <-c.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.err:
		return err
	case <-c.exited:
		// The loop is gone: either it answered this request on its way out, or the request
		// arrived after its last look at the queue and will never run.
		select {
		case err := <-r.err:
			return err
		default:
			return ErrClosed
		}
	}
}

// Close stops the loop after the queued writes are committed.
func (c *Committer) Close() {
	c.once.Do(func() { close(c.done) })
}

func (c *Committer) loop() {
	defer close(c.exited)
	group := make([]*commitReq, 0, maxGroup)
	for {
		group = group[:0]
		select {
		case r := <-c.reqs:
			group = append(group, r)
		case <-c.done:
			// Drain what was queued before Close so no caller waits forever.
			for {
				select {
				case r := <-c.reqs:
					c.commit([]*commitReq{r})
				default:
					return
				}
			}
		}
	fill:
		for len(group) < maxGroup {
			select {
			case r := <-c.reqs:
				group = append(group, r)
			default:
				break fill
			}
		}
		c.commit(group)
	}
}

func (c *Committer) commit(group []*commitReq) {
	err := c.db.Update(func(tx *Tx) error {
		for _, r := range group {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, r := range group {
			r.err <- err
		}
		return
	}
	for _, r := range group {
		r.err <- c.db.Update(r.fn)
	}
}
