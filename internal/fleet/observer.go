package fleet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// DefaultStreams are the streams an Observer follows when none are given: the ones every
// terminal fills from its outbox.
var DefaultStreams = []string{tmsproto.StreamEvent, tmsproto.StreamStats, tmsproto.StreamAck}

// maxExamples bounds Loss.Examples.
const maxExamples = 10

// ObserverOptions configure an Observer.
type ObserverOptions struct {
	Broker, Username, Password string
	// ClientID of the persistent session; "" = "fleet-observer-" and random hex, kept for
	// the Observer's life (the broker queues for it across its reconnects and restarts).
	ClientID string
	TLS      *tls.Config
	Streams  []string // default DefaultStreams
	Logger   *slog.Logger
	// OnUplink, if set, also gets every record (acks for a scenario waiting on them, say),
	// on the watch's goroutines: records of one device in order, one at a time.
	OnUplink func(tmsclient.Uplink)
}

// Observer follows every terminal's uplink through one persistent TMS session and checks each
// stream's seq (tmsclient.SeqChecker): duplicates are fine, gaps are losses. Start it before
// the fleet, so that it sees every record from seq 1.
type Observer struct {
	client   *tmsclient.Client
	sub      *tmsclient.Subscription
	seqs     *tmsclient.SeqChecker
	streams  []string
	onUplink func(tmsclient.Uplink)

	received, undecodable atomic.Uint64
}

// Observe connects and subscribes to the streams of every device ("+"); it returns once the
// broker granted the subscription.
func Observe(ctx context.Context, o ObserverOptions) (*Observer, error) {
	if o.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.ClientID = "fleet-observer-" + hex.EncodeToString(b[:])
	}
	if len(o.Streams) == 0 {
		o.Streams = DefaultStreams
	}
	c, err := tmsclient.Connect(ctx, tmsclient.Options{Broker: o.Broker, Username: o.Username, Password: o.Password,
		ClientID: o.ClientID, TLS: o.TLS, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("fleet: observer: %w", err)
	}
	obs := &Observer{client: c, seqs: tmsclient.NewSeqChecker(), streams: append([]string(nil), o.Streams...),
		onUplink: o.OnUplink}
	// The subscription lives until Close, not until ctx ends.
	if obs.sub, err = c.Watch(context.WithoutCancel(ctx), "+", obs.streams, obs.receive); err != nil {
		c.Close()
		return nil, fmt.Errorf("fleet: observer: %w", err)
	}
	return obs, nil
}

func (o *Observer) receive(u tmsclient.Uplink) {
	if u.Err != nil || u.Envelope == nil {
		o.undecodable.Add(1)
		return
	}
	o.received.Add(1)
	o.seqs.Observe(u.DeviceID, u.Stream, u.Envelope.Seq)
	if o.onUplink != nil {
		o.onUplink(u)
	}
}

// Received counts the records received (duplicates included).
func (o *Observer) Received() uint64 { return o.received.Load() }

// Undecodable counts messages on the followed topics that were not valid records.
func (o *Observer) Undecodable() uint64 { return o.undecodable.Load() }

// Seqs is the seq checker, for per-stream reports.
func (o *Observer) Seqs() *tmsclient.SeqChecker { return o.seqs }

// Loss is the result of Check.
type Loss struct {
	Streams  int      // (terminal, stream) pairs checked
	Complete int      // of which every seq 1..LastSeq was received
	Missing  uint64   // seqs appended by terminals and not received
	Examples []string // a few incomplete streams: "FS-00001/event: 3..5"
}

// Check compares, for every terminal of f and every followed stream, the seqs received with
// 1..LastSeq (what the terminal appended). A record still queued in an outbox counts as
// missing: check after the outboxes have drained.
func (o *Observer) Check(f *Fleet) Loss {
	ts := f.Terminals()
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.id
	}
	return CheckSeqs(o.seqs, o.streams, ids, func(id, stream string) (uint64, error) {
		return f.Terminal(id).LastSeq(stream)
	})
}

// CheckSeqs is Check over terminals named by id, wherever they run (the fleet simulator's
// worker processes): for every id and stream, were 1..last(id, stream) all received?
func CheckSeqs(seqs *tmsclient.SeqChecker, streams, ids []string, last func(id, stream string) (uint64, error)) Loss {
	var l Loss
	for _, id := range ids {
		for _, stream := range streams {
			l.Streams++
			upTo, err := last(id, stream)
			if err != nil {
				l.example(fmt.Sprintf("%s/%s: %v", id, stream, err))
				continue
			}
			if seqs.Complete(id, stream, upTo) {
				l.Complete++
				continue
			}
			rep := seqs.Report(id, stream)
			var missing uint64
			for _, g := range rep.Gaps {
				missing += g.To - g.From + 1
			}
			var tail *tmsclient.Range
			if upTo > rep.Highest {
				missing += upTo - rep.Highest
				tail = &tmsclient.Range{From: rep.Highest + 1, To: upTo}
			}
			l.Missing += missing
			desc := fmt.Sprintf("%s/%s: %d missing of 1..%d", id, stream, missing, upTo)
			if len(rep.Gaps) > 0 {
				desc += fmt.Sprintf(" (gap %s)", rep.Gaps[0])
			} else if tail != nil {
				desc += fmt.Sprintf(" (%s)", *tail)
			}
			l.example(desc)
		}
	}
	return l
}

func (l *Loss) example(s string) {
	if len(l.Examples) < maxExamples {
		l.Examples = append(l.Examples, s)
	}
}

// Await checks every interval until nothing is missing and returns that Loss, or the last
// one with ctx's error.
func (o *Observer) Await(ctx context.Context, f *Fleet, interval time.Duration) (Loss, error) {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		l := o.Check(f)
		if l.Missing == 0 && l.Complete == l.Streams {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return l, fmt.Errorf("fleet: observer: %d records missing: %w", l.Missing, ctx.Err())
		case <-tick.C:
		}
	}
}

// Close unsubscribes (the broker stops queueing for the session) and disconnects.
func (o *Observer) Close() {
	o.sub.Stop()
	o.client.Close()
}
