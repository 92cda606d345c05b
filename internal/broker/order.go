package broker

import (
	"cmp"
	"slices"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// resendOrder makes mochi re-send a resumed session's queued messages in the order they were
// queued, as MQTT 3.1.1 §4.6 requires and Mosquitto does.
//
// mochi re-sends them sorted by uint16(Created), where Created is a Unix time in seconds: the
// messages queued within one second come out in random order (and the order wraps every 18
// hours). Commands to a terminal must arrive in order, so just before mochi takes over the old
// session this hook rewrites Created to the rank of each message by (Created, packet id).
// Nothing else reads Created once message expiry is off (see Start). Packet ids increase
// within a session, which orders the messages queued in the same second; only a wrap of the
// 16-bit id space inside one second could still misorder, far beyond what a terminal receives.
type resendOrder struct {
	mqtt.HookBase
	srv *mqtt.Server
}

func (h *resendOrder) ID() string { return "posagent-resend-order" }

func (h *resendOrder) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

func (h *resendOrder) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return
	}
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok {
		return
	}
	queued := old.State.Inflight.GetAll(false)
	if len(queued) < 2 {
		return
	}
	slices.SortStableFunc(queued, func(a, b packets.Packet) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.PacketID, b.PacketID))
	})
	// Ranks start at 1 because mochi treats Created == 0 as "not yet stamped". The in-flight
	// store is bounded by MaximumInflight (≤ 65535), so every rank fits the uint16 sort key.
	for i, m := range queued {
		m.Created = int64(i + 1)
		old.State.Inflight.Set(m)
	}
}
