package command

import (
	"crypto/ed25519"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

// TestAuditHearsRefusalsAndOutcomes: every rejection (forged, unknown kind, bad body, replay)
// and every final state reaches the audit hook once, with its reason; acceptance, progress and
// a repeat answered from the journal do not.
func TestAuditHearsRefusalsAndOutcomes(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	r := newRig(t, t.TempDir(), key)
	defer r.stop()

	ok := tmsproto.Command{ID: "ok-1", Seq: 10, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "hi"})}
	r.send(r.sign(ok))
	r.acks(3) // accepted, running, succeeded
	r.send(r.sign(ok))
	r.acks(1) // the duplicate answer

	r.send(r.sign(tmsproto.Command{ID: "bad-body", Seq: 11, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": ""})}))
	r.acks(1)
	r.send(r.sign(tmsproto.Command{ID: "unknown", Seq: 12, Kind: "fly", Issued: r.now.Unix()}))
	r.acks(1)
	r.send(r.sign(tmsproto.Command{ID: "replay", Seq: 10, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "again"})}))
	r.acks(1)
	r.send(r.sign(tmsproto.Command{ID: "boom-1", Seq: 13, Kind: "boom", Issued: r.now.Unix()}))
	r.acks(3) // accepted, running, failed
	_, other, _ := ed25519.GenerateKey(nil)
	forged, err := tmsproto.SignCommand(other, "cmd-1", tmsproto.Command{ID: "forged", Seq: 14, Kind: "echo", Issued: r.now.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	r.send(forged)
	r.acks(1)

	want := []CommandAudit{
		{ID: "ok-1", Kind: "echo", Seq: 10, State: tmsproto.StateSucceeded},
		{ID: "bad-body", Kind: "echo", Seq: 11, State: tmsproto.StateRejected, Reason: tmsproto.ReasonInvalidBody},
		{ID: "unknown", Kind: "fly", Seq: 12, State: tmsproto.StateRejected, Reason: tmsproto.ReasonUnknownKind},
		{ID: "replay", Kind: "echo", Seq: 10, State: tmsproto.StateRejected, Reason: tmsproto.ReasonReplayedSeq},
		{ID: "boom-1", Kind: "boom", Seq: 13, State: tmsproto.StateFailed},
		{Ref: tmsproto.Ref(forged), State: tmsproto.StateRejected},
	}
	got := r.audits()
	if len(got) != len(want) {
		t.Fatalf("audited %d events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.Kind != w.Kind || g.Seq != w.Seq || g.State != w.State || (w.Reason != "" && g.Reason != w.Reason) {
			t.Errorf("audit %d = %+v, want %+v", i, g, w)
		}
		if g.State != tmsproto.StateSucceeded && (g.Reason == "" || g.Message == "") {
			t.Errorf("audit %d (%s) carries no reason: %+v", i, g.State, g)
		}
		if w.Ref != "" && g.Ref != w.Ref {
			t.Errorf("audit %d: ref %q, want %q", i, g.Ref, w.Ref)
		}
	}
}
