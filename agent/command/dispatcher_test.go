package command

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

type rig struct {
	t      *testing.T
	dir    string
	db     *store.DB
	commit *store.Committer
	out    *outbox.Outbox
	d      *Dispatcher
	key    ed25519.PrivateKey
	now    time.Time
	cancel context.CancelFunc
	done   chan error
	runs   atomic.Int32
	block  chan struct{} // when non-nil, "slow" handlers wait on it

	auditMu sync.Mutex
	audited []CommandAudit
}

func (r *rig) record(_ context.Context, ev CommandAudit) {
	r.auditMu.Lock()
	r.audited = append(r.audited, ev)
	r.auditMu.Unlock()
}

func (r *rig) audits() []CommandAudit {
	r.auditMu.Lock()
	defer r.auditMu.Unlock()
	return append([]CommandAudit(nil), r.audited...)
}

func newRig(t *testing.T, dir string, key ed25519.PrivateKey) *rig {
	t.Helper()
	r := &rig{t: t, dir: dir, key: key, now: time.Unix(1_800_000_000, 0)}
	var err error
	if r.db, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	r.commit = store.NewCommitter(r.db)
	if r.out, err = outbox.Open(r.db, r.commit, outbox.Options{}); err != nil {
		t.Fatal(err)
	}
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{"cmd-1": key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	r.d, err = New(Options{DB: r.db, Commit: r.commit, Outbox: r.out, Verifier: v, ReplayWindow: 4,
		Now: func() time.Time { return r.now }, Audit: r.record})
	if err != nil {
		t.Fatal(err)
	}
	type echoBody struct {
		Text string `cbor:"text"`
	}
	r.d.Register("echo", Kind{
		Check: func(b []byte) (any, error) {
			var body echoBody
			if err := tmsproto.Unmarshal(b, &body); err != nil {
				return nil, err
			}
			if body.Text == "" {
				return nil, errors.New("text: required")
			}
			return body, nil
		},
		Run: func(ctx context.Context, req *Request) (any, error) {
			r.runs.Add(1)
			return map[string]string{"echo": req.Body.(echoBody).Text}, nil
		},
	})
	r.d.Register("slow", Kind{Run: func(ctx context.Context, req *Request) (any, error) {
		r.runs.Add(1)
		if err := req.Progress(ctx, 50); err != nil {
			return nil, err
		}
		if r.block != nil {
			select {
			case <-r.block:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return map[string]bool{"resumed": req.Resumed}, nil
	}})
	r.d.Register("boom", Kind{Run: func(ctx context.Context, req *Request) (any, error) {
		panic("handler bug")
	}})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.d.Run(ctx) }()
	return r
}

func (r *rig) stop() {
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Fatal(err)
	}
	r.commit.Close()
	r.db.Close()
}

func (r *rig) send(raw []byte) {
	r.t.Helper()
	if err := r.d.Receive(context.Background(), raw); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) sign(cmd tmsproto.Command) []byte {
	r.t.Helper()
	raw, err := tmsproto.SignCommand(r.key, "cmd-1", cmd)
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

func body(t *testing.T, v any) []byte {
	b, err := tmsproto.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// acks waits until n acks are queued and returns them, deleting them from the outbox.
func (r *rig) acks(n int) []tmsproto.Ack {
	r.t.Helper()
	var out []tmsproto.Ack
	deadline := time.Now().Add(10 * time.Second)
	var last uint64
	for len(out) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("waited for %d acks, got %d: %+v", n, len(out), out)
		}
		recs, err := r.out.Read(last, 100)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(recs) == 0 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		for _, rec := range recs {
			last = rec.Key
			env, err := tmsproto.DecodeEnvelope(rec.Payload)
			if err != nil {
				r.t.Fatal(err)
			}
			var a tmsproto.Ack
			if err := tmsproto.Unmarshal(env.Body, &a); err != nil {
				r.t.Fatal(err)
			}
			out = append(out, a)
			if err := r.out.Delete(context.Background(), rec.Key); err != nil {
				r.t.Fatal(err)
			}
		}
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

func eq[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLifecycleDuplicateAndReplay(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	r := newRig(t, t.TempDir(), key)
	defer r.stop()

	cmd := tmsproto.Command{ID: "c1", Seq: 10, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "hi"})}
	r.send(r.sign(cmd))
	acks := r.acks(3)
	if !eq(states(acks), []tmsproto.State{tmsproto.StateAccepted, tmsproto.StateRunning, tmsproto.StateSucceeded}) {
		t.Fatalf("lifecycle %v", states(acks))
	}
	var res map[string]string
	if err := tmsproto.Unmarshal(acks[2].Result, &res); err != nil || res["echo"] != "hi" {
		t.Fatalf("result %v %v", res, err)
	}

	// The same id again: the recorded result, not a second run.
	r.send(r.sign(cmd))
	a := r.acks(1)[0]
	if !a.Duplicate || a.State != tmsproto.StateSucceeded || r.runs.Load() != 1 {
		t.Fatalf("duplicate: %+v runs=%d", a, r.runs.Load())
	}

	// A new id with an executed seq: a replay.
	replay := cmd
	replay.ID = "c2"
	r.send(r.sign(replay))
	if a := r.acks(1)[0]; a.State != tmsproto.StateRejected || a.Reason != tmsproto.ReasonReplayedSeq {
		t.Fatalf("replay: %+v", a)
	}

	// Fill the window (4) with newer seqs; seq 9 is then older than anything remembered.
	for i, seq := range []uint64{11, 12, 13, 14} {
		c := tmsproto.Command{ID: "w" + string(rune('a'+i)), Seq: seq, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "x"})}
		r.send(r.sign(c))
		r.acks(3)
	}
	old := tmsproto.Command{ID: "old", Seq: 9, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "x"})}
	r.send(r.sign(old))
	if a := r.acks(1)[0]; a.Reason != tmsproto.ReasonReplayedSeq {
		t.Fatalf("old seq: %+v", a)
	}
	// Out of order but inside the window is fine.
	late := tmsproto.Command{ID: "late", Seq: 16, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "x"})}
	early := tmsproto.Command{ID: "early", Seq: 15, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "x"})}
	r.send(r.sign(late))
	r.acks(3)
	r.send(r.sign(early))
	if a := r.acks(3)[2]; a.State != tmsproto.StateSucceeded {
		t.Fatalf("out of order within window: %+v", a)
	}
}

func TestRejections(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	r := newRig(t, t.TempDir(), key)
	defer r.stop()
	good := tmsproto.Command{ID: "x", Seq: 1, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "hi"})}

	forged, _ := tmsproto.SignCommand(otherKey, "cmd-1", good)
	unknownKey, _ := tmsproto.SignCommand(key, "cmd-9", good)
	tampered := r.sign(good)
	tampered[len(tampered)-70] ^= 1 // inside the payload
	expired := good
	expired.ID, expired.Seq, expired.Expires = "e", 2, r.now.Unix()-1
	unknownKind := good
	unknownKind.ID, unknownKind.Seq, unknownKind.Kind = "k", 3, "selfdestruct"
	badBody := good
	badBody.ID, badBody.Seq, badBody.Body = "b", 4, body(t, map[string]string{"text": ""})
	extraField := good
	extraField.ID, extraField.Seq, extraField.Body = "f", 5, body(t, map[string]string{"text": "a", "rm": "-rf"})

	cases := []struct {
		raw  []byte
		want tmsproto.Reason
	}{
		{forged, tmsproto.ReasonBadSignature},
		{unknownKey, tmsproto.ReasonUnknownKey},
		{tampered, ""}, // bad signature or malformed, depending on the byte hit
		{[]byte("not cbor at all"), tmsproto.ReasonMalformed},
		{make([]byte, tmsproto.MaxCommandSize+1), tmsproto.ReasonOversized},
		{r.sign(expired), tmsproto.ReasonExpired},
		{r.sign(unknownKind), tmsproto.ReasonUnknownKind},
		{r.sign(badBody), tmsproto.ReasonInvalidBody},
		{r.sign(extraField), tmsproto.ReasonInvalidBody},
	}
	for i, c := range cases {
		r.send(c.raw)
		a := r.acks(1)[0]
		if a.State != tmsproto.StateRejected || (c.want != "" && a.Reason != c.want) {
			t.Errorf("case %d: %+v, want reason %s", i, a, c.want)
		}
		if a.ID == "" && a.Ref != tmsproto.Ref(c.raw) {
			t.Errorf("case %d: ref %q", i, a.Ref)
		}
	}
	if r.runs.Load() != 0 {
		t.Fatalf("a rejected command ran")
	}
	// Still serving.
	r.send(r.sign(tmsproto.Command{ID: "ok", Seq: 9, Kind: "echo", Issued: r.now.Unix(), Body: body(t, map[string]string{"text": "hi"})}))
	if a := r.acks(3)[2]; a.State != tmsproto.StateSucceeded {
		t.Fatalf("after rejections: %+v", a)
	}
}

func TestPanicFailsAndInterruptedCommandResumes(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	r := newRig(t, dir, key)
	r.send(r.sign(tmsproto.Command{ID: "p", Seq: 1, Kind: "boom", Issued: r.now.Unix()}))
	if a := r.acks(3)[2]; a.State != tmsproto.StateFailed || a.Reason != tmsproto.ReasonExecFailed {
		t.Fatalf("panic: %+v", a)
	}

	r.block = make(chan struct{})
	r.send(r.sign(tmsproto.Command{ID: "s", Seq: 2, Kind: "slow", Issued: r.now.Unix()}))
	acks := r.acks(3) // accepted, running, running 50 %
	if acks[2].Progress != 50 {
		t.Fatalf("progress: %+v", acks)
	}
	r.stop() // shutdown while "slow" runs

	r = newRig(t, dir, key)
	defer r.stop()
	a := r.acks(1)[0]
	if a.State != tmsproto.StateSucceeded {
		t.Fatalf("resumed: %+v", a)
	}
	var res map[string]bool
	if err := tmsproto.Unmarshal(a.Result, &res); err != nil || !res["resumed"] {
		t.Fatalf("result %v %v", res, err)
	}
}

func TestNonConcurrentKindsRunInAcceptanceOrder(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	r := newRig(t, t.TempDir(), key)
	var mu sync.Mutex
	var order []uint64
	r.d.Register("ordered", Kind{Run: func(ctx context.Context, req *Request) (any, error) {
		// Later commands would overtake earlier ones here if they ran side by side.
		time.Sleep(time.Duration(10-req.Command.Seq) * 3 * time.Millisecond)
		mu.Lock()
		order = append(order, req.Command.Seq)
		mu.Unlock()
		return nil, nil
	}})
	defer r.stop()
	for seq := uint64(1); seq <= 5; seq++ {
		r.send(r.sign(tmsproto.Command{ID: fmt.Sprint("o", seq), Seq: seq, Kind: "ordered", Issued: r.now.Unix()}))
	}
	r.acks(15)
	mu.Lock()
	defer mu.Unlock()
	if !eq(order, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("ran in order %v", order)
	}
}

func TestFailedAckCarriesAPartialResult(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	r := newRig(t, t.TempDir(), key)
	r.d.Register("partial", Kind{Run: func(ctx context.Context, req *Request) (any, error) {
		return map[string]int{"passed": 2, "failed": 1}, errors.New("one of three failed")
	}})
	defer r.stop()
	r.send(r.sign(tmsproto.Command{ID: "p", Seq: 1, Kind: "partial", Issued: r.now.Unix()}))
	a := r.acks(3)[2]
	var res map[string]int
	if a.State != tmsproto.StateFailed || tmsproto.Unmarshal(a.Result, &res) != nil || res["failed"] != 1 {
		t.Fatalf("failed ack %+v (result %v)", a, res)
	}
}
