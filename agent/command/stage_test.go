package command

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

// A long command reports stages; small moves inside a stage are thinned, a new stage always
// goes out, and a failure carries the handler's own reason and the stage it failed in.
func TestStagesAndOwnReasons(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	r := newRig(t, t.TempDir(), key)
	defer r.stop()
	r.d.Register("staged", Kind{Run: func(ctx context.Context, req *Request) (any, error) {
		for _, s := range []struct {
			stage string
			pct   int
		}{{"downloading", 0}, {"downloading", 2}, {"downloading", 40}, {"verifying", 41}, {"installing", 42}} {
			if err := req.Report(ctx, s.stage, s.pct); err != nil {
				return nil, err
			}
		}
		return nil, Fail("hash_mismatch", errors.New("component agent: sha-256 differs"))
	}})
	r.d.Register("picky", Kind{
		Check: func([]byte) (any, error) { return nil, Fail("bad_signature", errors.New("manifest: signature")) },
		Run:   func(context.Context, *Request) (any, error) { return nil, nil },
	})
	r.send(r.sign(tmsproto.Command{ID: "s1", Seq: 1, Kind: "staged", Issued: r.now.Unix(), Body: body(t, map[string]any{})}))
	acks := r.acks(7)
	var got []string
	for _, a := range acks[2:6] {
		got = append(got, a.Stage)
	}
	if !eq(got, []string{"downloading", "downloading", "verifying", "installing"}) || acks[3].Progress != 40 {
		t.Fatalf("stages %v (%+v)", got, acks)
	}
	final := acks[6]
	if final.State != tmsproto.StateFailed || final.Reason != "hash_mismatch" || final.Stage != "installing" {
		t.Fatalf("final %+v", final)
	}
	r.send(r.sign(tmsproto.Command{ID: "p1", Seq: 2, Kind: "picky", Issued: r.now.Unix(), Body: body(t, map[string]any{})}))
	if a := r.acks(1)[0]; a.State != tmsproto.StateRejected || a.Reason != "bad_signature" {
		t.Fatalf("rejection %+v", a)
	}
}
