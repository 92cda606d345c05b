package access

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Request is the pending registration request, for the operator to decide on.
type Request struct {
	ID     string // random; Approve and Deny name it, so a decision meets the request shown
	Name   string // the cash register's name
	Remote string // its address, as the HTTP server saw it
	Since  time.Time
}

type pendingReq struct {
	req Request
	// claimed is set (under pmu) when Approve or Deny takes the request: from then on only
	// that decision answers Register.
	claimed bool
	done    chan result // buffered 1: the decider never waits for Register
}

type result struct {
	tok Tokens
	err error
}

// Requests signals every change of the pending request: one appeared, or it was approved,
// denied, timed out or abandoned. Signals coalesce (the channel holds one), so the receiver
// calls Pending after each and shows what it returns, or nothing. There is one channel for the
// whole Store: one receiver (the agent's PIN pad loop).
func (s *Store) Requests() <-chan struct{} { return s.notify }

func (s *Store) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Pending returns the pending registration request, if any.
func (s *Store) Pending() (Request, bool) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.pending == nil {
		return Request{}, false
	}
	return s.pending.req, true
}

// Register asks for access for the cash register name, calling from remote (/v2/register),
// and waits for the operator's decision. Approved, it returns the new tokens, already durable;
// an earlier registration of the same name is replaced and its access token answers
// ErrSuperseded. Otherwise: ErrBadName, ErrPending (another request waits), ErrDenied,
// ErrTimeout (RequestTTL passed), ErrClosed, or the context's error.
//
// Once an operator's approval is being committed it is no longer abandoned: Register then
// returns its outcome even if its context ended or RequestTTL passed meanwhile.
func (s *Store) Register(ctx context.Context, name, remote string) (Tokens, error) {
	if !ValidName(name) {
		return Tokens{}, ErrBadName
	}
	if s.closed.Load() {
		return Tokens{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Tokens{}, fmt.Errorf("access: register: %w", err)
	}
	s.pmu.Lock()
	if s.pending != nil {
		s.pmu.Unlock()
		return Tokens{}, ErrPending
	}
	p := &pendingReq{req: Request{ID: randomID(), Name: name, Remote: remote, Since: s.now()},
		done: make(chan result, 1)}
	s.pending = p
	s.pmu.Unlock()
	s.signal()
	s.log.Info("ECR registration requested", "id", p.req.ID, "name", name, "remote", remote)
	s.emit(ctx, "ecr.register.request", map[string]any{"id": p.req.ID, "name": name, "remote": remote})

	timer := time.NewTimer(s.requestTTL)
	defer timer.Stop()
	select {
	case r := <-p.done:
		return r.tok, r.err
	case <-timer.C:
		return s.abandon(ctx, p, ErrTimeout, "ecr.register.timeout")
	case <-ctx.Done():
		return s.abandon(ctx, p, fmt.Errorf("access: register: %w", ctx.Err()), "ecr.register.cancel")
	}
}

// abandon withdraws p unless a decision has claimed it, in which case that decision's outcome
// is awaited and returned.
func (s *Store) abandon(ctx context.Context, p *pendingReq, err error, action string) (Tokens, error) {
	s.pmu.Lock()
	if p.claimed {
		s.pmu.Unlock()
		r := <-p.done
		return r.tok, r.err
	}
	if s.pending == p {
		s.pending = nil
	}
	s.pmu.Unlock()
	s.signal()
	s.log.Info("ECR registration abandoned", "id", p.req.ID, "name", p.req.Name, "err", err)
	s.emit(context.WithoutCancel(ctx), action, map[string]any{"id": p.req.ID, "name": p.req.Name,
		"remote": p.req.Remote})
	return Tokens{}, err
}

// claim takes the pending request id for a decision.
func (s *Store) claim(id string) (*pendingReq, error) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.pending
	if p == nil || p.claimed || p.req.ID != id {
		return nil, ErrNoRequest
	}
	p.claimed = true
	return p, nil
}

// release ends the claimed request p with r.
func (s *Store) release(p *pendingReq, r result) {
	s.pmu.Lock()
	if s.pending == p {
		s.pending = nil
	}
	p.done <- r
	s.pmu.Unlock()
	s.signal()
}

// Approve grants the pending request id; by names who decided ("pinpad", "diag:<user>"). The
// tokens are committed before Register returns them. ErrNoRequest if id is not the pending
// request (already decided, timed out, or never existed).
func (s *Store) Approve(ctx context.Context, id, by string) error {
	p, err := s.claim(id)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	tok, err := s.issue(ctx, s.state.Load().names[p.req.Name].recOrNil(), p.req.Name, time.Time{})
	s.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("access: approval of %q not saved: %w", p.req.Name, err)
		s.release(p, result{err: err})
		s.log.Error("ECR registration approval failed", "id", id, "name", p.req.Name, "err", err)
		return err
	}
	s.release(p, result{tok: tok})
	s.log.Info("ECR registration approved", "id", id, "name", p.req.Name, "by", by,
		"expires", tok.Expires)
	s.emit(ctx, "ecr.register.approve", map[string]any{"id": id, "name": p.req.Name,
		"remote": p.req.Remote, "by": by, "expires": tok.Expires})
	return nil
}

// Deny refuses the pending request id (Register returns ErrDenied); by as for Approve.
func (s *Store) Deny(ctx context.Context, id, by string) error {
	p, err := s.claim(id)
	if err != nil {
		return err
	}
	s.release(p, result{err: ErrDenied})
	s.log.Info("ECR registration denied", "id", id, "name", p.req.Name, "by", by)
	s.emit(ctx, "ecr.register.deny", map[string]any{"id": id, "name": p.req.Name,
		"remote": p.req.Remote, "by": by})
	return nil
}

func (e *entry) recOrNil() *record {
	if e == nil {
		return nil
	}
	return e.rec
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
