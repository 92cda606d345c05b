package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/tmsproto"
)

// TestLockUnlockSettleCommands drives the TMS command kinds terminal.lock, terminal.unlock and
// settle against the whole terminal: a locked terminal refuses a payment, an unlocked one signs
// in again at once, settle closes the batch with its totals as the result. Every command's
// outcome (and a refused one) is an audit entry, and the uplinked audit records verify as a
// chain.
func TestLockUnlockSettleCommands(t *testing.T) {
	r := newPayRig(t, "IT-DIAG-CMD")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 4200}); err != nil {
		t.Fatal(err)
	}
	r.reader.Remove()

	ack := r.e.send(t, "terminal.lock", nil)
	var state struct {
		State string `cbor:"state"`
	}
	if ack.State != tmsproto.StateSucceeded || looseUnmarshal(ack.Result, &state) != nil || state.State != string(payment.Locked) {
		t.Fatalf("terminal.lock: %+v (%+v)", ack, state)
	}
	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Pay(ctx, checkout.Sale{Op: payment.OpPurchase, Amount: 100}); !errors.Is(err, payment.ErrLocked) {
		t.Errorf("payment on a locked terminal: %v", err)
	}
	r.reader.Remove()

	// Unlocked, the terminal signs in again at once, not at the payments service's next
	// retry a minute later.
	ack = r.e.send(t, "terminal.unlock", nil)
	if ack.State != tmsproto.StateSucceeded {
		t.Fatalf("terminal.unlock: %+v", ack)
	}
	waitFor(t, 20*time.Second, "signed in after unlock", func() bool { return r.a.Payments().Status().State == payment.Normal })

	ack = r.e.send(t, "settle", nil)
	var totals payment.SettlementTotals
	if ack.State != tmsproto.StateSucceeded || looseUnmarshal(ack.Result, &totals) != nil {
		t.Fatalf("settle: %+v", ack)
	}
	if totals.DomDebitCount != 1 || totals.DomDebit != 4200 || !totals.DomBalanced || totals.Batch != 1 {
		t.Errorf("settled totals %+v", totals)
	}
	if s := r.a.Payments().Status(); s.Batch != 2 || s.Txns != 0 {
		t.Errorf("after settle: %+v", s)
	}
	if ack := r.e.send(t, "fly", nil); ack.State != tmsproto.StateRejected {
		t.Errorf("unknown kind: %+v", ack)
	}

	// The audit log has each outcome, the TMS command id as the actor.
	entries, err := r.a.Audit().Recent(200)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cmd.terminal.lock": audit.OutcomeOK, "cmd.terminal.unlock": audit.OutcomeOK,
		"cmd.settle": audit.OutcomeOK, "cmd.fly": audit.OutcomeDenied}
	for _, e := range entries {
		if outcome, ok := want[e.Action]; ok {
			if e.Source != audit.SourceTMS || e.Outcome != outcome || e.Actor == "" || e.Actor == "unknown" {
				t.Errorf("audit entry %+v", e)
			}
			if e.Action == "cmd.fly" && e.Fields["reason"] != string(tmsproto.ReasonUnknownKind) {
				t.Errorf("refusal without its reason: %+v", e)
			}
			delete(want, e.Action)
		}
	}
	if len(want) > 0 {
		t.Errorf("not audited: %v", want)
	}

	// The same entries went up on up/log/audit and verify as a chain from the first.
	var last uint64
	waitFor(t, 20*time.Second, "audit uplink", func() bool {
		recs := r.e.stream(tmsproto.StreamLogAudit)
		return len(recs) > 0 && len(recs) >= len(entries)
	})
	var v audit.Verifier
	for _, env := range r.e.stream(tmsproto.StreamLogAudit) {
		e, err := v.Next(env.Body)
		if err != nil {
			t.Fatalf("uplinked audit record %d: %v", env.Seq, err)
		}
		last = e.Seq
	}
	if last < entries[len(entries)-1].Seq {
		t.Errorf("uplink verified to seq %d, the terminal has %d", last, entries[len(entries)-1].Seq)
	}
}
