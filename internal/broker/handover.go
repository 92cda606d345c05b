package broker

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// handoverPatience bounds how long messages for a client wait for its connection to be
// established. Past it they are delivered as they come (possibly out of order, never lost):
// a client that stops reading during its handshake must not stall its publishers for ever.
const handoverPatience = 10 * time.Second

// handover makes mochi's session takeover lossless and keeps the session's order.
//
// When a client reconnects under the id of an existing session, mochi (v2.7.9,
// Server.inheritClientSession, called from attachClient) copies the old session object's
// in-flight queue into the new connection, clears the old object, and only then registers the
// new connection under the id (Clients.Add). Meanwhile every publisher still finds the old
// object under the id, and publishToClient queues the message there — after the copy was
// taken. Such a message has been acknowledged to its publisher but lives only in a discarded
// object: it is never delivered. (With a DataDir the window is long: clearing the old object
// costs one fsync per queued message.) Messages routed to the new connection after
// Clients.Add and before its queued messages are re-sent also overtake the queue.
//
// So, from the moment a connection starts establishing its session until the session is
// established:
//   - a message queued on an older object of the same client id is recorded as a stray;
//     once the new connection holds the session (OnSessionEstablished, after the re-send and
//     before anything else is read), every stray not in the copied queue is added to the new
//     queue under a fresh packet id and sent;
//   - the goroutines that route such messages, or messages to the new connection itself,
//     wait until then, so that every publisher's messages keep their order behind the
//     re-sent queue.
//
// A stray that appears after the session was established (a publisher that looked the client
// up before the takeover) is moved to the current session at once.
type handover struct {
	mqtt.HookBase
	srv *mqtt.Server
	// persist stores a message placed in a session's queue; nil without a DataDir.
	persist func(cl *mqtt.Client, pk packets.Packet)

	mu       sync.Mutex
	arriving map[string]*arrival // by client id, from OnSessionEstablish until settled
	pending  atomic.Int32        // len(arriving), read without mu on every QoS publish
}

// arrival is a connection establishing its session.
type arrival struct {
	cl     *mqtt.Client
	strays []stray
	// ctx ends when the arrival is settled or superseded, or after handoverPatience.
	ctx       context.Context
	cancel    context.CancelFunc
	impatient sync.Once
}

// stray is a message queued on a session object that a newer connection is taking over.
type stray struct {
	from *mqtt.Client
	pk   packets.Packet
}

func newHandover(srv *mqtt.Server) *handover {
	return &handover{srv: srv, arriving: make(map[string]*arrival)}
}

func (h *handover) ID() string { return "posagent-handover" }

func (h *handover) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablish || b == mqtt.OnSessionEstablished || b == mqtt.OnQosPublish
}

// OnSessionEstablish runs after authentication and before mochi looks for an existing session.
func (h *handover) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handoverPatience)
	a := &arrival{cl: cl, ctx: ctx, cancel: cancel}
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev, ok := h.arriving[cl.ID]; ok {
		// Superseded before it was established: the strays waiting for the previous
		// connection wait for this one (mochi copies the previous one's queue to it).
		a.strays = prev.strays
		prev.cancel()
	} else {
		h.pending.Add(1)
	}
	h.arriving[cl.ID] = a
}

// OnSessionEstablished runs in the connection's goroutine after mochi re-sent the queue and
// before the connection's first packet is read, so no acknowledgement has changed the queue.
func (h *handover) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	for {
		h.mu.Lock()
		a, ok := h.arriving[cl.ID]
		if !ok || a.cl != cl {
			h.mu.Unlock()
			return // superseded meanwhile: the newer connection settles
		}
		if len(a.strays) == 0 {
			h.settled(a)
			h.mu.Unlock()
			return
		}
		moved, kept := h.place(cl, a.strays)
		a.strays = nil
		h.mu.Unlock()
		// Outside the lock: a write may wait for the client to read.
		h.store(cl, kept)
		h.store(cl, moved)
		h.send(cl, moved)
	}
}

// connectionEnded is called when mochi is done with a network connection. A connection that
// failed between OnSessionEstablish and OnSessionEstablished (mochi calls no hook then) is
// registered as the session by now; its strays join its queue for the next connection.
func (h *handover) connectionEnded(c net.Conn) {
	h.mu.Lock()
	var a *arrival
	for _, x := range h.arriving {
		if x.cl.Net.Conn == c {
			a = x
			break
		}
	}
	if a == nil {
		h.mu.Unlock()
		return
	}
	moved, kept := h.place(a.cl, a.strays)
	a.strays = nil
	h.settled(a)
	h.mu.Unlock()
	h.store(a.cl, kept)
	h.store(a.cl, moved)
}

// wait returns when a is settled or superseded, or when it has been waited for too long.
func (h *handover) wait(a *arrival) {
	<-a.ctx.Done()
	if errors.Is(a.ctx.Err(), context.DeadlineExceeded) {
		a.impatient.Do(func() {
			h.Log.Warn("client still establishing its session; its messages no longer wait for it",
				"client", a.cl.ID, "remote", a.cl.Net.Remote, "waited", handoverPatience)
		})
	}
}

// settled forgets an arrival and releases its waiters. h.mu must be held.
func (h *handover) settled(a *arrival) {
	delete(h.arriving, a.cl.ID)
	h.pending.Add(-1)
	a.cancel()
}

// OnQosPublish runs in the routing goroutine right after mochi queued pk on cl.
func (h *handover) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	// Dup marks mochi's own re-sends; only new PUBLISHes to a subscriber are routed here.
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Dup || cl.Net.Inline {
		return
	}
	if h.pending.Load() == 0 && !cl.IsTakenOver() {
		return
	}
	h.mu.Lock()
	if a, ok := h.arriving[cl.ID]; ok {
		if a.cl != cl {
			// Whether pk made it into the copied queue is decided when a.cl holds the session.
			a.strays = append(a.strays, stray{from: cl, pk: pk})
		}
		h.mu.Unlock()
		h.wait(a)
		return
	}
	if !cl.IsTakenOver() {
		h.mu.Unlock()
		return
	}
	heir, ok := h.srv.Clients.Get(cl.ID)
	if !ok || heir == cl {
		h.mu.Unlock()
		return // the session is gone (expired or clean): nobody to deliver to
	}
	moved, kept := h.place(heir, []stray{{from: cl, pk: pk}})
	h.mu.Unlock()
	h.store(heir, kept)
	h.store(heir, moved)
	h.send(heir, moved)
}

// holdDelivery makes a message routed to a connection that is still establishing its session
// wait until the session is established. mochi registers the new connection under its id
// before it re-sends the inherited queue; a message routed to it in between would be put in
// the queue (and so re-sent with it) and then written again by its routing goroutine: a
// duplicate, ahead of older queued messages. Waiting before mochi queues it (its ACL check
// comes first) delivers it once, behind the re-sent queue.
func (h *handover) holdDelivery(cl *mqtt.Client) {
	if h.pending.Load() == 0 || cl.Net.Inline {
		return
	}
	h.mu.Lock()
	a, ok := h.arriving[cl.ID]
	h.mu.Unlock()
	if ok && a.cl == cl {
		h.wait(a)
	}
}

// deliveryGate is the hook through which routing asks holdDelivery. It has no say in access:
// it answers "not allowed by me", and mochi asks the next hook (the access control).
type deliveryGate struct {
	mqtt.HookBase
	h *handover
}

func (g *deliveryGate) ID() string { return "posagent-delivery-gate" }

func (g *deliveryGate) Provides(b byte) bool { return b == mqtt.OnACLCheck }

// OnACLCheck is called with write false before a message is queued for a subscriber (and
// for a client's own SUBSCRIBE, which is only read once its session is established).
func (g *deliveryGate) OnACLCheck(cl *mqtt.Client, _ string, write bool) bool {
	if !write {
		g.h.holdDelivery(cl)
	}
	return false
}

// place adds to heir's queue every stray that is not in it already and returns the packets
// added (under their new packet ids) and those found already copied with the session. h.mu
// must be held, and heir must be registered under its id (so mochi no longer replaces its
// queue), and not yet taken over (a takeover starts with OnSessionEstablish, under h.mu).
func (h *handover) place(heir *mqtt.Client, strays []stray) (moved, kept []packets.Packet) {
	if len(strays) == 0 {
		return nil, nil
	}
	if !inheritsSession(heir) {
		h.Log.Debug("queue of a replaced session dropped: the new connection starts clean", "client", heir.ID, "messages", len(strays))
		return nil, nil
	}
	limit := int(h.srv.Options.Capabilities.MaximumInflight)
	for _, s := range strays {
		if !persistentSession(s.from) {
			continue // mochi does not carry a clean session over either
		}
		if m, ok := heir.State.Inflight.Get(s.pk.PacketID); ok && sameMessage(m, s.pk) {
			kept = append(kept, m)
			continue
		}
		if heir.State.Inflight.Len() >= limit {
			h.Log.Warn("client store quota reached", "client", heir.ID)
			continue
		}
		id, err := heir.NextPacketID()
		if err != nil {
			h.Log.Warn("packet ids exhausted", "client", heir.ID, "error", err)
			continue
		}
		pk := s.pk
		pk.PacketID = uint16(id)
		heir.State.Inflight.Set(pk)
		moved = append(moved, pk)
	}
	if len(moved) > 0 {
		h.Log.Info("messages routed to a replaced session moved to the new connection", "client", heir.ID, "messages", len(moved))
	}
	return moved, kept
}

func (h *handover) store(cl *mqtt.Client, pks []packets.Packet) {
	if h.persist == nil {
		return
	}
	for _, pk := range pks {
		h.persist(cl, pk)
	}
}

// send writes pks to cl if it is connected; otherwise they wait in its queue.
func (h *handover) send(cl *mqtt.Client, pks []packets.Packet) {
	for _, pk := range pks {
		if cl.Closed() {
			return
		}
		if err := cl.WritePacket(pk); err != nil {
			h.Log.Debug("sending a moved message failed; it stays queued", "client", cl.ID, "error", err)
			return
		}
	}
}

// inheritsSession mirrors mochi's rule: a connection continues the existing session unless it
// asks for a clean start.
func inheritsSession(cl *mqtt.Client) bool { return !cl.Properties.Clean }

// persistentSession mirrors mochi's rule: an MQTT 3 clean session is not carried over.
func persistentSession(cl *mqtt.Client) bool {
	return !cl.Properties.Clean || cl.Properties.ProtocolVersion >= 5
}

// sameMessage reports whether m is the very packet p (mochi copies each routed message's
// payload, and its queue copies share it), rather than another message that reuses its
// packet id.
func sameMessage(m, p packets.Packet) bool {
	if m.TopicName != p.TopicName || len(m.Payload) != len(p.Payload) {
		return false
	}
	if len(p.Payload) == 0 {
		return m.Origin == p.Origin
	}
	return &m.Payload[0] == &p.Payload[0]
}

// trackedListener tells the handover when mochi is done with a connection.
type trackedListener struct {
	listeners.Listener
	ended func(net.Conn)
}

func (l *trackedListener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		defer l.ended(c)
		return establish(id, c)
	})
}
