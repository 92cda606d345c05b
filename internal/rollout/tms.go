package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

type tmsSender struct{ c *tmsclient.Client }

// NewTMSSender publishes commands through a TMS connection (QoS 1, again after a reconnect).
func NewTMSSender(c *tmsclient.Client) Sender { return tmsSender{c: c} }

func (s tmsSender) Send(ctx context.Context, deviceID string, raw []byte) error {
	return s.c.SendRaw(ctx, deviceID, raw)
}

type tmsAcks struct {
	c   *tmsclient.Client
	log *slog.Logger
}

// NewTMSAckSource follows the acks of every terminal through one watch of up/ack ("+"), not
// a subscription per terminal. Undecodable acks are logged on log (nil: dropped).
func NewTMSAckSource(c *tmsclient.Client, log *slog.Logger) AckSource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return tmsAcks{c: c, log: log}
}

func (s tmsAcks) WatchAcks(ctx context.Context, fn func(string, tmsproto.Ack)) (func(), error) {
	sub, err := s.c.Watch(ctx, "+", []string{tmsproto.StreamAck}, func(u tmsclient.Uplink) {
		if u.Err != nil {
			s.log.Warn("rollout: undecodable ack record", "topic", u.Topic, "err", u.Err)
			return
		}
		a, err := tmsclient.DecodeAck(u.Envelope.Body)
		if err != nil {
			s.log.Warn("rollout: undecodable ack", "device", u.DeviceID, "seq", u.Envelope.Seq, "err", err)
			return
		}
		fn(u.DeviceID, a)
	})
	if err != nil {
		return nil, err
	}
	return sub.Stop, nil
}

// Discover returns, sorted, the terminals whose retained up/online record the broker holds
// (online or not) and whose id matches pattern (path.Match; "*" for all). The broker sends
// retained records right after the subscription; Discover returns once quiet has passed
// without a new one, or when ctx ends.
func Discover(ctx context.Context, c *tmsclient.Client, pattern string, quiet time.Duration) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("%w: pattern %q: %w", ErrInvalidPlan, pattern, err)
	}
	var (
		mu    sync.Mutex
		seen  = map[string]bool{}
		fresh = make(chan struct{}, 1)
	)
	sub, err := c.Watch(ctx, "+", []string{tmsproto.StreamOnline}, func(u tmsclient.Uplink) {
		if u.DeviceID == "" {
			return
		}
		if ok, _ := path.Match(pattern, u.DeviceID); !ok {
			return
		}
		mu.Lock()
		seen[u.DeviceID] = true
		mu.Unlock()
		select {
		case fresh <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("rollout: discover: %w", err)
	}
	defer sub.Stop()
	t := time.NewTimer(quiet)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-fresh:
			t.Reset(quiet)
		case <-t.C:
			done = true
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}
