package broker

import (
	"context"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// redactingHandler replaces the mochi packets that mochi attaches to some log records with a
// summary. A whole packet would print its payload (commands, key blocks, receipts) and, for a
// CONNECT, the password.
type redactingHandler struct {
	next slog.Handler
}

func (h redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = redactAttr(a)
	}
	return redactingHandler{next: h.next.WithAttrs(clean)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{next: h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = redactAttr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		switch pk := v.Any().(type) {
		case packets.Packet:
			return packetSummary(a.Key, &pk)
		case *packets.Packet:
			if pk != nil {
				return packetSummary(a.Key, pk)
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func packetSummary(key string, pk *packets.Packet) slog.Attr {
	return slog.Group(key,
		"type", packets.PacketNames[pk.FixedHeader.Type],
		"topic", pk.TopicName,
		"qos", pk.FixedHeader.Qos,
		"id", pk.PacketID,
		"payload_bytes", len(pk.Payload),
	)
}
