package payment_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/hostsim"
	"github.com/posagent/posagent/internal/testpki"
)

// Offline settlements and tips are kept at the terminal and reach the host before the next
// online request (or only at the settlement), once each, and count in the totals.
func TestOfflineAndAdjustmentUploaded(t *testing.T) {
	r := newRig(t, func(d *termconfig.Document) {
		d.HostParameters.TipsEnabled = true
		d.HostParameters.TipMaxPercent = 20
	})
	r.SignIn()
	ctx := context.Background()
	p, err := r.purchase(debitPAN, "3112", 10000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Engine.Adjust(ctx, p.ID, 2500, "01"); !errors.Is(err, payment.ErrNotAllowed) {
		t.Errorf("tip above 20%%: %v", err)
	}
	tip, err := r.Engine.Adjust(ctx, p.ID, 1500, "01")
	if err != nil {
		t.Fatal(err)
	}
	off, err := r.Engine.Offline(ctx, payment.Request{Amount: 4000, Card: card(creditPAN, "3006")}, "123456")
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Engine.Status(); s.Stored != 2 {
		t.Fatalf("stored %+v", s)
	}
	if got := r.Host.Charged(tid); got != 10000 {
		t.Fatalf("host charged %d before the upload", got)
	}
	// The first upload's answer is lost: it goes again with the next request, and counts once.
	_ = r.Host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: "0220", Count: 1})
	if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{tip.ID, off.ID} {
		if x, _ := r.Engine.Txn(id); x.State != payment.StateApproved || !x.Uploaded {
			t.Errorf("%s after the upload: %+v", id, x)
		}
	}
	if got := r.Host.Charged(tid); got != 10000+1500+4000+200 {
		t.Errorf("host charged %d", got)
	}
	st, err := r.Engine.Settle(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if st.DomDebit != 10000+1500+4000+200 || !st.DomBalanced {
		t.Errorf("totals %+v", st)
	}
}

func TestParametersAndStatusUpload(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx := context.Background()
	params, err := r.Engine.DownloadParameters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if params[payment.ParamTPDU] == "" || params[payment.ParamResend] == "" {
		t.Errorf("parameters %v", params)
	}
	if s := r.Engine.Status(); s.Params[payment.ParamTPDU] != params[payment.ParamTPDU] {
		t.Errorf("status params %v", s.Params)
	}
	if err := r.Engine.StatusUpload(ctx, map[string]string{payment.StatusCardReader: "0", payment.StatusPINPad: "0", payment.StatusPrinter: "1"}); err != nil {
		t.Fatal(err)
	}
	ts, _ := r.Host.Terminal(tid)
	if len(ts.Status) == 0 {
		t.Errorf("host saw no status upload: %+v", ts)
	}
}

// Test mode: only with an empty batch; the terminal signs in again and its transactions
// reach the host marked as tests (header state) and are marked on the record.
func TestTestMode(t *testing.T) {
	r := newRig(t, nil)
	r.SignIn()
	ctx := context.Background()
	if _, err := r.purchase(debitPAN, "3112", 100); err != nil {
		t.Fatal(err)
	}
	if err := r.Engine.SetTestMode(ctx, true); !errors.Is(err, payment.ErrBatchNotEmpty) {
		t.Fatalf("test mode with a batch: %v", err)
	}
	if _, err := r.Engine.Settle(ctx, "01"); err != nil {
		t.Fatal(err)
	}
	if err := r.Engine.SetTestMode(ctx, true); err != nil {
		t.Fatal(err)
	}
	if s := r.Engine.Status(); s.State != payment.SignedOut || !s.Test {
		t.Fatalf("after the switch %+v", s)
	}
	r.SignIn()
	tx, err := r.purchase(debitPAN, "3112", 200)
	if err != nil {
		t.Fatal(err)
	}
	if !tx.Test {
		t.Error("transaction not marked as a test")
	}
	entries := r.Host.Entries(tid)
	if last := entries[len(entries)-1]; !last.Test {
		t.Errorf("host entry not a test: %+v", last)
	}
}

// The host link can be TLS, trusting the CA the configuration gives; a host whose
// certificate the terminal does not trust gets nothing (the host is unreachable, nothing to
// reverse).
func TestHostOverTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	cert, key := testpki.WriteFiles(t, "host", ca.Server(t, "localhost"))
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(d *termconfig.Document) {
		d.AuthHost.TLS, d.AuthHost.ServerName, d.AuthHost.CACertificate = true, "localhost", string(caPEM)
	}, func(c *hostsim.Config) { c.TLSCert, c.TLSKey = cert, key })
	r.SignIn()
	if _, err := r.purchase(debitPAN, "3112", 4200); err != nil {
		t.Fatal(err)
	}
	if got := r.Host.Charged(tid); got != 4200 {
		t.Errorf("host charged %d", got)
	}
	other := testpki.NewCA(t)
	otherPEM, _ := os.ReadFile(other.File)
	doc := *r.Doc.Load()
	doc.AuthHost.CACertificate = string(otherPEM)
	r.Doc.Store(&doc)
	if _, err := r.purchase(debitPAN, "3112", 100); !errors.Is(err, payment.ErrHostDown) {
		t.Errorf("purchase against an untrusted host: %v", err)
	}
	if s := r.Engine.Status(); s.Reversals != 0 {
		t.Errorf("a reversal owed for a request never sent: %+v", s)
	}
}
