package tmsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/posagent/posagent/agent/tmsproto"
)

// DecodeAck decodes the body of an up/ack record and checks its state.
func DecodeAck(body []byte) (tmsproto.Ack, error) {
	var a tmsproto.Ack
	if err := tmsproto.Unmarshal(body, &a); err != nil {
		return tmsproto.Ack{}, err
	}
	switch a.State {
	case tmsproto.StateAccepted, tmsproto.StateRunning, tmsproto.StateSucceeded, tmsproto.StateFailed, tmsproto.StateRejected:
	default:
		return tmsproto.Ack{}, &tmsproto.DecodeError{Reason: tmsproto.ReasonMalformed, Err: fmt.Errorf("unknown ack state %q", a.State)}
	}
	if a.ID == "" && a.Ref == "" {
		return tmsproto.Ack{}, &tmsproto.DecodeError{Reason: tmsproto.ReasonMalformed, Err: errors.New("ack without id or ref")}
	}
	return a, nil
}

// AckMatch selects the acks of one command: by its id, or by the ref of its raw bytes (the
// agent acks with an empty id and the ref when it could not read the id).
type AckMatch struct {
	ID  string
	Ref string
}

func (m AckMatch) matches(a tmsproto.Ack) bool {
	return (m.ID != "" && a.ID == m.ID) || (m.Ref != "" && a.Ref == m.Ref)
}

// maxBufferedAcks bounds what an AckWaiter keeps for Awaits that have not started yet.
const maxBufferedAcks = 1024

// AckWaiter collects the acks of one device from the moment it is created, so an ack that
// arrives right after a Send is not missed.
type AckWaiter struct {
	device string
	sub    *Subscription
	log    *slog.Logger

	mu     sync.Mutex
	acks   []tmsproto.Ack
	base   uint64 // index, since creation, of acks[0]
	notify chan struct{}
}

// WatchAcks starts collecting the acks of deviceID; it stops when ctx ends or Stop is called.
func (c *Client) WatchAcks(ctx context.Context, deviceID string) (*AckWaiter, error) {
	if err := tmsproto.ValidDeviceID(deviceID); err != nil {
		return nil, &InputError{Field: "device id", Err: err}
	}
	w := &AckWaiter{device: deviceID, log: c.log, notify: make(chan struct{})}
	sub, err := c.Watch(ctx, deviceID, []string{tmsproto.StreamAck}, w.receive)
	if err != nil {
		return nil, err
	}
	w.sub = sub
	return w, nil
}

func (w *AckWaiter) receive(u Uplink) {
	if u.Err != nil {
		w.log.Warn("undecodable ack record", "device", u.DeviceID, "err", u.Err)
		return
	}
	a, err := DecodeAck(u.Envelope.Body)
	if err != nil {
		w.log.Warn("undecodable ack", "device", u.DeviceID, "seq", u.Envelope.Seq, "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acks = append(w.acks, a)
	if over := len(w.acks) - maxBufferedAcks; over > 0 {
		// A fresh array: slices handed out by Await keep pointing at the old one.
		w.acks = slices.Clone(w.acks[over:])
		w.base += uint64(over)
	}
	close(w.notify)
	w.notify = make(chan struct{})
}

// Await calls fn (if not nil) for every ack matching m, in order, from the creation of the
// waiter on, and returns the first final one (succeeded, failed or rejected; possibly a
// duplicate repeating a recorded result).
func (w *AckWaiter) Await(ctx context.Context, m AckMatch, fn func(tmsproto.Ack)) (tmsproto.Ack, error) {
	if m == (AckMatch{}) {
		return tmsproto.Ack{}, inputErr("ack match", "need an id or a ref")
	}
	var next uint64
	for {
		w.mu.Lock()
		if next < w.base {
			w.log.Warn("acks dropped before they were awaited", "device", w.device, "count", w.base-next)
			next = w.base
		}
		pending := w.acks[next-w.base:]
		next = w.base + uint64(len(w.acks))
		notify := w.notify
		w.mu.Unlock()
		for _, a := range pending {
			if !m.matches(a) {
				continue
			}
			if fn != nil {
				fn(a)
			}
			if a.State.Final() {
				return a, nil
			}
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return tmsproto.Ack{}, fmt.Errorf("tmsclient: awaiting ack of %s on %s: %w", m.String(), w.device, ctx.Err())
		case <-w.sub.Done():
			return tmsproto.Ack{}, fmt.Errorf("tmsclient: awaiting ack of %s on %s: watch stopped", m.String(), w.device)
		}
	}
}

func (m AckMatch) String() string {
	if m.ID != "" {
		return "id " + m.ID
	}
	return "ref " + m.Ref
}

// Stop ends the waiter's subscription.
func (w *AckWaiter) Stop() { w.sub.Stop() }

// AwaitAck subscribes to the acks of deviceID and waits for the final ack of command id. Acks
// are not retained: one published before the subscription is not seen, so to send and wait
// use SendAndAwait, or WatchAcks before Send.
func (c *Client) AwaitAck(ctx context.Context, deviceID, id string, fn func(tmsproto.Ack)) (tmsproto.Ack, error) {
	w, err := c.WatchAcks(ctx, deviceID)
	if err != nil {
		return tmsproto.Ack{}, err
	}
	defer w.Stop()
	return w.Await(ctx, AckMatch{ID: id}, fn)
}

// SendAndAwait subscribes to the device's acks, sends cmd and waits for its final ack, calling
// fn for every ack of the command on the way.
func (c *Client) SendAndAwait(ctx context.Context, deviceID string, key SignKey, cmd tmsproto.Command, fn func(tmsproto.Ack), opts ...SendOption) (Sent, tmsproto.Ack, error) {
	w, err := c.WatchAcks(ctx, deviceID)
	if err != nil {
		return Sent{}, tmsproto.Ack{}, err
	}
	defer w.Stop()
	sent, err := c.Send(ctx, deviceID, key, cmd, opts...)
	if err != nil {
		return sent, tmsproto.Ack{}, err
	}
	ack, err := w.Await(ctx, sent.Match(), fn)
	return sent, ack, err
}
