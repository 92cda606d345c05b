package tmsclient

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/posagent/posagent/agent/tmsproto"
)

// Uplink is one message received on an uplink topic.
type Uplink struct {
	DeviceID string
	Stream   string
	Topic    string
	Envelope *tmsproto.Envelope // nil when Err is set by a topic or decode error
	Raw      []byte
	Err      error // why the message could not be decoded
	Retained bool
}

// Errors set in Uplink.Err besides tmsproto's *DecodeError.
var (
	ErrBadTopic       = errors.New("not an uplink topic")
	ErrStreamMismatch = errors.New("envelope stream does not match its topic")
)

func decodeUplink(topic string, payload []byte, retained bool) Uplink {
	u := Uplink{Topic: topic, Raw: payload, Retained: retained}
	dev, stream, ok := tmsproto.ParseUpTopic(topic)
	if !ok {
		u.Err = fmt.Errorf("%w: %q", ErrBadTopic, topic)
		return u
	}
	u.DeviceID, u.Stream = dev, stream
	env, err := tmsproto.DecodeEnvelope(payload)
	if err != nil {
		u.Err = err
		return u
	}
	if env.Stream != stream {
		u.Err = fmt.Errorf("%w: envelope %q, topic %q", ErrStreamMismatch, env.Stream, stream)
		return u
	}
	u.Envelope = env
	return u
}

// Subscription is a running Watch.
type Subscription struct {
	c        *Client
	filters  []string
	shards   []*mailbox
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	done     chan struct{}
	// unhook releases the AfterFunc on the caller's context, which may outlive many watches.
	mu     sync.Mutex
	unhook func() bool
}

// watchShards is how many handler goroutines a fleet-wide watch uses; a device always maps to
// the same one, which keeps its records in order while a slow device does not hold up others.
const watchShards = 4

// Watch subscribes (QoS 1) to the uplink of deviceFilter (a device id, or "+" for all) on the
// given streams (all when none; a stream may use MQTT wildcards, e.g. "log/+") and calls fn
// for every message received, until ctx ends or Stop is called. It returns once the broker
// has granted the subscription, so anything published after that is seen.
//
// fn runs on goroutines of the subscription, never on the receive path: records of one device
// arrive in order, one at a time; records of different devices may be handled concurrently.
// Uplink values are shared between watches and must not be modified.
func (c *Client) Watch(ctx context.Context, deviceFilter string, streams []string, fn func(Uplink)) (*Subscription, error) {
	filters, err := watchFilters(deviceFilter, streams)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.closed:
		return nil, ErrClosed
	default:
	}
	n := watchShards
	if deviceFilter != "+" {
		n = 1
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Subscription{c: c, filters: filters, cancel: cancel, done: make(chan struct{})}
	for range n {
		m := &mailbox{wake: make(chan struct{}, 1)}
		s.shards = append(s.shards, m)
		s.wg.Go(func() { m.run(sctx, fn) })
	}
	// Registered before subscribing, so the retained records the broker sends right after
	// the SUBACK find their watch.
	c.watchMu.Lock()
	c.watches[s] = struct{}{}
	c.watchMu.Unlock()
	if err := c.addFilters(ctx, filters); err != nil {
		s.shutdown(false)
		return nil, fmt.Errorf("tmsclient: watch %v: %w", filters, err)
	}
	unhook := context.AfterFunc(ctx, s.Stop)
	s.mu.Lock()
	s.unhook = unhook
	s.mu.Unlock()
	return s, nil
}

// Stop ends the watch: records not yet handed to fn are dropped. It returns when fn is no
// longer running, so it must not be called from fn.
func (s *Subscription) Stop() { s.shutdown(true) }

// Done is closed when the watch has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) shutdown(unsubscribe bool) {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		unhook := s.unhook
		s.mu.Unlock()
		if unhook != nil {
			unhook()
		}
		s.c.watchMu.Lock()
		delete(s.c.watches, s)
		s.c.watchMu.Unlock()
		s.cancel()
		if unsubscribe {
			s.c.removeFilters(s.filters)
		}
		s.wg.Wait()
		close(s.done)
	})
	<-s.done
}

func (s *Subscription) matches(topic string) bool {
	for _, f := range s.filters {
		if topicMatch(f, topic) {
			return true
		}
	}
	return false
}

func (s *Subscription) deliver(u Uplink) {
	i := 0
	if len(s.shards) > 1 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(u.DeviceID))
		i = int(h.Sum32() % uint32(len(s.shards)))
	}
	s.shards[i].put(u)
}

// mailbox is an unbounded FIFO with one consumer. Unbounded because the alternative, blocking
// the producer, would stall paho's receive path and with it keep-alives and PUBACKs.
type mailbox struct {
	mu   sync.Mutex
	q    []Uplink
	wake chan struct{}
}

func (m *mailbox) put(u Uplink) {
	m.mu.Lock()
	m.q = append(m.q, u)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *mailbox) run(ctx context.Context, fn func(Uplink)) {
	for {
		m.mu.Lock()
		batch := m.q
		m.q = nil
		m.mu.Unlock()
		for i := range batch {
			if ctx.Err() != nil {
				return
			}
			fn(batch[i])
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-m.wake:
		case <-ctx.Done():
			return
		}
	}
}

// watchFilters turns a device filter and stream names into uplink topic filters.
func watchFilters(device string, streams []string) ([]string, error) {
	if device != "+" {
		if err := tmsproto.ValidDeviceID(device); err != nil {
			return nil, &InputError{Field: "device filter", Err: err}
		}
	}
	prefix := tmsproto.TopicRoot + device + "/up/"
	if len(streams) == 0 {
		return []string{prefix + "#"}, nil
	}
	var out []string
	seen := make(map[string]bool)
	for _, s := range streams {
		if err := validStreamFilter(s); err != nil {
			return nil, err
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, prefix+s)
		}
	}
	return out, nil
}

func validStreamFilter(s string) error {
	levels := strings.Split(s, "/")
	for i, l := range levels {
		switch {
		case l == "":
			return inputErr("stream", "%q has an empty level", s)
		case l == "#" && i != len(levels)-1:
			return inputErr("stream", "%q: # must be the last level", s)
		case l != "+" && l != "#" && strings.ContainsAny(l, "+#"):
			return inputErr("stream", "%q: a wildcard must fill a whole level", s)
		}
	}
	return nil
}

// topicMatch reports whether an MQTT topic filter matches a topic.
func topicMatch(filter, topic string) bool {
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

// covers reports whether every topic that filter f matches is also matched by filter g.
func covers(g, f string) bool {
	gl := strings.Split(g, "/")
	fl := strings.Split(f, "/")
	for i, gs := range gl {
		if gs == "#" {
			return true
		}
		if i >= len(fl) {
			return false
		}
		switch fs := fl[i]; {
		case fs == "#", fs == "+" && gs != "+":
			return false
		case gs != "+" && gs != fs:
			return false
		}
	}
	return len(gl) == len(fl)
}

// minimalCover returns the filters of want that no other filter of want covers.
func minimalCover(want map[string]int) map[string]bool {
	out := make(map[string]bool, len(want))
	for f := range want {
		covered := false
		for g := range want {
			if g != f && covers(g, f) {
				covered = true
				break
			}
		}
		if !covered {
			out[f] = true
		}
	}
	return out
}

func (c *Client) addFilters(ctx context.Context, filters []string) error {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for _, f := range filters {
		c.want[f]++
	}
	if err := c.reconcile(ctx); err != nil {
		// reconcile only drops broker subscriptions after the new ones are granted, so
		// forgetting the wants is all there is to undo.
		c.release(filters)
		return err
	}
	return nil
}

func (c *Client) removeFilters(filters []string) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.release(filters)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.reconcile(ctx); err != nil && !errors.Is(err, ErrClosed) {
		c.log.Warn("updating subscriptions failed", "err", err)
	}
}

func (c *Client) release(filters []string) {
	for _, f := range filters {
		if c.want[f]--; c.want[f] <= 0 {
			delete(c.want, f)
		}
	}
}

// reconcile makes the broker subscriptions the minimal cover of want: new filters are
// subscribed before covered ones are dropped, so there is never a moment without coverage.
// Called with subMu held.
func (c *Client) reconcile(ctx context.Context) error {
	cover := minimalCover(c.want)
	add := make(map[string]byte)
	for f := range cover {
		if _, ok := c.active[f]; !ok {
			add[f] = 1
		}
	}
	if len(add) > 0 {
		gen, err := c.subscribe(ctx, add)
		if err != nil {
			return err
		}
		for f := range add {
			c.active[f] = gen
		}
	}
	var drop []string
	for f := range c.active {
		if !cover[f] {
			drop = append(drop, f)
			delete(c.active, f)
		}
	}
	if len(drop) > 0 && c.pc.IsConnectionOpen() {
		// Best effort: a subscription left behind only brings messages no watch wants, which
		// onMessage drops; a clean session forgets it at the next reconnect anyway.
		if err := c.waitToken(ctx, c.pc.Unsubscribe(drop...)); err != nil {
			c.log.Debug("unsubscribe failed", "filters", drop, "err", err)
		}
	}
	return nil
}

// subscribe subscribes filters, waiting for the connection and trying again if it drops
// before the SUBACK. It returns the generation of the connection that granted them.
func (c *Client) subscribe(ctx context.Context, filters map[string]byte) (uint64, error) {
	for {
		if err := c.waitUp(ctx); err != nil {
			return 0, err
		}
		gen := c.generation()
		err := c.subscribeOnce(ctx, filters)
		if err == nil {
			return gen, nil
		}
		var refused *refusedError
		if errors.As(err, &refused) || ctx.Err() != nil || c.pc.IsConnectionOpen() {
			return 0, err
		}
		select {
		case <-c.closed:
			return 0, ErrClosed
		default:
		}
		c.log.Debug("subscribe interrupted by a disconnect; retrying", "err", err)
	}
}

type refusedError struct{ filter string }

func (e *refusedError) Error() string { return "broker refused the subscription to " + e.filter }

func (c *Client) subscribeOnce(ctx context.Context, filters map[string]byte) error {
	// No callback: every message goes to the default handler exactly once, however many
	// filters match it. With a callback per filter paho calls each matching one.
	tok := c.pc.SubscribeMultiple(filters, nil)
	if err := c.waitToken(ctx, tok); err != nil {
		return err
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for f, code := range st.Result() {
			if code >= 0x80 {
				return &refusedError{filter: f}
			}
		}
	}
	return nil
}
