package integration

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

func configBody(t testing.TB, version uint64) []byte {
	t.Helper()
	doc := termconfig.Default()
	doc.Version = version
	body, err := termconfig.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// statsConfigVersions lists the configuration version reported by each stats record so far.
func (e *env) statsConfigVersions() []uint64 {
	var out []uint64
	for _, env := range e.stream(tmsproto.StreamStats) {
		var s struct {
			Config uint64 `cbor:"config"`
		}
		// Decode leniently: only one field matters here.
		if err := looseUnmarshal(env.Body, &s); err != nil {
			e.t.Fatalf("stats body: %v", err)
		}
		out = append(out, s.Config)
	}
	return out
}

func states(acks []tmsproto.Ack) []tmsproto.State {
	var s []tmsproto.State
	for _, a := range acks {
		s = append(s, a.State)
	}
	return s
}

func TestSignedCommandsEndToEnd(t *testing.T) {
	const dev = "IT-CMD-1"
	e := newEnv(t, dev)
	e.startInProcess()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitFor(t, 20*time.Second, "first stats", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })

	// A signed config.apply runs through its lifecycle and the next stats carry the version.
	sent, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "config.apply", Body: configBody(t, 7)})
	if err != nil {
		t.Fatal(err)
	}
	if a := e.finalAck(sent.Match(), 0); a.State != tmsproto.StateSucceeded {
		t.Fatalf("config.apply: %+v", a)
	}
	if got := states(e.acks(sent.Match())); len(got) != 3 || got[0] != tmsproto.StateAccepted || got[1] != tmsproto.StateRunning {
		t.Fatalf("lifecycle %v", got)
	}
	waitFor(t, 10*time.Second, "stats with config version 7", func() bool {
		v := e.statsConfigVersions()
		return len(v) > 0 && v[len(v)-1] == 7
	})

	// The very same message again: its recorded result, not a second execution.
	if err := e.tms.SendRaw(ctx, dev, sent.Raw); err != nil {
		t.Fatal(err)
	}
	dup := e.finalAck(sent.Match(), 3)
	if !dup.Duplicate || dup.State != tmsproto.StateSucceeded {
		t.Fatalf("repeat: %+v", dup)
	}
	time.Sleep(200 * time.Millisecond)
	applied := 0
	for _, ev := range e.stream(tmsproto.StreamEvent) {
		if ev.Kind == "config.applied" {
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("config applied %d times", applied)
	}

	// Everything that must be refused, each with its reason.
	_, otherKey, _ := ed25519.GenerateKey(nil)
	now := time.Now().Unix()
	sign := func(key ed25519.PrivateKey, kid string, cmd tmsproto.Command) []byte {
		raw, err := tmsproto.SignCommand(key, kid, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	base := tmsproto.Command{Kind: "config.apply", Issued: now, Body: configBody(t, 8)}
	withID := func(id string, seq uint64, edit func(*tmsproto.Command)) tmsproto.Command {
		c := base
		c.ID, c.Seq = id, seq
		if edit != nil {
			edit(&c)
		}
		return c
	}
	seq := sent.Command.Seq
	cases := []struct {
		name string
		raw  []byte
		want tmsproto.Reason
	}{
		{"forged", sign(otherKey, e.key.ID, withID("forged", seq+1, nil)), tmsproto.ReasonBadSignature},
		{"unknown key", sign(otherKey, "intruder", withID("unknown-key", seq+2, nil)), tmsproto.ReasonUnknownKey},
		{"expired", sign(e.key.Key, e.key.ID, withID("expired", seq+3, func(c *tmsproto.Command) { c.Expires = now - 60 })), tmsproto.ReasonExpired},
		{"replayed seq", sign(e.key.Key, e.key.ID, withID("replayed", seq, nil)), tmsproto.ReasonReplayedSeq},
		{"malformed", []byte{0xd2, 0x84, 0x40, 0xa0, 0xff}, tmsproto.ReasonMalformed},
		{"oversized", make([]byte, tmsproto.MaxCommandSize+1024), tmsproto.ReasonOversized},
		{"unknown kind", sign(e.key.Key, e.key.ID, withID("unknown-kind", seq+4, func(c *tmsproto.Command) { c.Kind = "format.disk" })), tmsproto.ReasonUnknownKind},
		{"invalid body", sign(e.key.Key, e.key.ID, withID("invalid-body", seq+5, func(c *tmsproto.Command) { c.Body = []byte{0xa1, 0x61, 0x78, 0x01} })), tmsproto.ReasonInvalidBody},
	}
	for _, c := range cases {
		if err := e.tms.SendRaw(ctx, dev, c.raw); err != nil {
			t.Fatal(err)
		}
		m := tmsclient.AckMatch{Ref: tmsproto.Ref(c.raw)}
		if cmd, err := tmsproto.ParseCommandUnverified(c.raw); err == nil {
			m.ID = cmd.ID
		}
		a := e.finalAck(m, 0)
		if a.State != tmsproto.StateRejected || a.Reason != c.want {
			t.Errorf("%s: %+v, want rejected/%s", c.name, a, c.want)
		}
	}
	if v := e.statsConfigVersions(); v[len(v)-1] != 7 {
		t.Fatalf("a rejected command changed the configuration: %v", v)
	}

	// Still serving.
	sent, err = e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "stats.now"})
	if err != nil {
		t.Fatal(err)
	}
	if a := e.finalAck(sent.Match(), 0); a.State != tmsproto.StateSucceeded {
		t.Fatalf("stats.now after rejections: %+v", a)
	}
}
