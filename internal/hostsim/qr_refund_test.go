package hostsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// qrRaw is one request to the QR API: status code and body.
func qrRaw(t *testing.T, h http.Handler, method, path, body string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Code, rec.Body.Bytes()
}

// refund posts a refund and decodes the answer (order fields and refundId).
func refund(t *testing.T, h http.Handler, id, body string) (int, QRRefund) {
	t.Helper()
	code, b := qrRaw(t, h, "POST", "/qr/orders/"+id+"/refund", body)
	var r QRRefund
	_ = json.Unmarshal(b, &r)
	return code, r
}

// hourAgo is a server clock one hour behind: an order made now counts its timers from an
// hour ago, so a timer "half an hour after the order" fires at once while one set two hours
// after it is an hour away. The QR timers run on the real clock; this puts the scan (or the
// payment) at zero delay without a race against a short one.
func hourAgo() time.Time { return time.Now().Add(-time.Hour) }

func TestQRScannedThenCancelledByTheTerminal(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Now = hourAgo
		c.QR = QRConfig{PayDelay: Duration(2 * time.Hour), Expiry: Duration(3 * time.Hour)} // scan now, pay in an hour
	})
	h := s.QRHandler()
	code, o := qrDo(t, h, "POST", "/qr/orders", `{"amount": 900, "tid": "`+testTID+`"}`)
	if code != http.StatusCreated || o.Status != QRPending {
		t.Fatalf("create: %d %+v", code, o)
	}
	waitQR(t, h, o.ID, QRScanned)
	if _, got := qrDo(t, h, "GET", "/qr/orders/"+o.ID, ""); got.ScannedAt.IsZero() {
		t.Errorf("scanned order without scannedAt: %+v", got)
	}
	code, got := qrDo(t, h, "POST", "/qr/orders/"+o.ID+"/cancel", "")
	if code != http.StatusOK || got.Status != QRCancelled {
		t.Fatalf("cancel of a scanned order: %d %+v", code, got)
	}
	if code, _ := qrDo(t, h, "POST", "/qr/orders/"+o.ID+"/cancel", ""); code != http.StatusConflict {
		t.Errorf("second cancel: %d", code)
	}
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("charged %d", got)
	}
}

func TestQRScannedOrderExpires(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Now = hourAgo
		// Scan now; expiry in 100 ms; the payment would come only after it.
		c.QR = QRConfig{PayDelay: Duration(2 * time.Hour), Expiry: Duration(time.Hour + 100*time.Millisecond)}
	})
	h := s.QRHandler()
	_, o := qrDo(t, h, "POST", "/qr/orders", `{"amount": 900, "tid": "`+testTID+`"}`)
	waitQR(t, h, o.ID, QRExpired)
	if _, got := qrDo(t, h, "GET", "/qr/orders/"+o.ID, ""); got.ScannedAt.IsZero() {
		t.Errorf("expired without having been scanned: %+v", got)
	}
}

// The simulated customer goes through scanned on the way to paid.
func TestQRScannedThenPaid(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Now = hourAgo
		c.QR = QRConfig{PayDelay: Duration(time.Hour + 200*time.Millisecond), Expiry: Duration(3 * time.Hour)}
	})
	h := s.QRHandler()
	_, o := qrDo(t, h, "POST", "/qr/orders", `{"amount": 1500, "tid": "`+testTID+`"}`)
	waitQR(t, h, o.ID, QRPaid)
	_, got := qrDo(t, h, "GET", "/qr/orders/"+o.ID, "")
	if got.ScannedAt.IsZero() || got.ScannedAt.After(got.Updated) {
		t.Errorf("paid order: scanned %v, paid %v", got.ScannedAt, got.Updated)
	}
	if s.Charged(testTID) != 1500 {
		t.Errorf("charged %d", s.Charged(testTID))
	}
}

func TestQRRefunds(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Now = hourAgo
		c.QR = QRConfig{PayDelay: Duration(time.Hour), Expiry: Duration(3 * time.Hour)} // paid at once
	})
	h := s.QRHandler()
	_, o := qrDo(t, h, "POST", "/qr/orders", `{"amount": 2500, "tid": "`+testTID+`"}`)
	waitQR(t, h, o.ID, QRPaid)

	for _, bad := range []string{`{`, `{}`, `{"amount": 0}`, `{"amount": -5}`, `{"amount": "abc"}`, `{"amount": 0.001}`, ``} {
		if code, _ := qrRaw(t, h, "POST", "/qr/orders/"+o.ID+"/refund", bad); code != http.StatusBadRequest {
			t.Errorf("refund body %q: %d", bad, code)
		}
	}
	if code, _ := qrRaw(t, h, "POST", "/qr/orders/QRNOPE/refund", `{"amount": 1}`); code != http.StatusNotFound {
		t.Errorf("refund of an unknown order: %d", code)
	}

	code, r1 := refund(t, h, o.ID, `{"amount": 1000}`)
	if code != http.StatusOK || r1.RefundID == "" || r1.Refunded != 1000 || r1.Status != QRPaid || r1.ID != o.ID {
		t.Fatalf("first refund: %d %+v", code, r1)
	}
	// Major units as in a create.
	code, r2 := refund(t, h, o.ID, `{"amount": "5.00"}`)
	if code != http.StatusOK || r2.Refunded != 1500 || r2.RefundID == r1.RefundID {
		t.Fatalf("second refund: %d %+v", code, r2)
	}
	// Beyond the amount: 409 with the order as it is.
	code, over := refund(t, h, o.ID, `{"amount": 1001}`)
	if code != http.StatusConflict || over.Refunded != 1500 || over.ID != o.ID || over.RefundID != "" {
		t.Errorf("refund beyond the amount: %d %+v", code, over)
	}
	if code, r3 := refund(t, h, o.ID, `{"amount": 1000}`); code != http.StatusOK || r3.Refunded != 2500 {
		t.Errorf("refund of the rest: %d %+v", code, r3)
	}
	if code, _ := refund(t, h, o.ID, `{"amount": 1}`); code != http.StatusConflict {
		t.Errorf("refund of a fully refunded order: %d", code)
	}
	// The order itself carries the total, not a refund id.
	code, body := qrRaw(t, h, "GET", "/qr/orders/"+o.ID, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"refunded":2500`)) || bytes.Contains(body, []byte("refundId")) {
		t.Errorf("order after refunds: %d %s", code, body)
	}
	if got := s.Charged(testTID); got != 0 {
		t.Errorf("charged after a full refund %d", got)
	}
	var ids []string
	for _, e := range s.Entries(testTID) {
		if e.Op == OpQRRefund {
			if e.OrderID != o.ID || e.State != StateApproved {
				t.Errorf("refund entry %+v", e)
			}
			ids = append(ids, e.RefundID)
		}
	}
	if len(ids) != 3 || ids[0] != r1.RefundID || ids[1] != r2.RefundID {
		t.Errorf("refund entries %v", ids)
	}
	// QR refunds are not in the ISO 8583 batch.
	if tot := s.BatchTotals(testTID, 1); tot.DomCreditCount != 0 || tot.DomDebitCount != 0 {
		t.Errorf("batch totals %+v", tot)
	}

	// Not paid: pending, and a cancelled one.
	s.cfg.QR.PayDelay = Duration(3 * time.Hour) // the customer never gets to it
	_, p := qrDo(t, h, "POST", "/qr/orders", `{"amount": 700, "tid": "`+testTID+`"}`)
	if code, got := refund(t, h, p.ID, `{"amount": 100}`); code != http.StatusConflict || got.ID != p.ID || got.Status != QRPending {
		t.Errorf("refund of a pending order: %d %+v", code, got)
	}
	qrDo(t, h, "POST", "/qr/orders/"+p.ID+"/cancel", "")
	if code, got := refund(t, h, p.ID, `{"amount": 100}`); code != http.StatusConflict || got.Status != QRCancelled {
		t.Errorf("refund of a cancelled order: %d %+v", code, got)
	}

	// The Go API's errors.
	if _, err := s.RefundQROrder(p.ID, 100); !errors.Is(err, ErrOrderNotPaid) {
		t.Errorf("RefundQROrder of a cancelled order: %v", err)
	}
	if _, err := s.RefundQROrder(o.ID, 1); !errors.Is(err, ErrRefundTooLarge) {
		t.Errorf("RefundQROrder beyond the amount: %v", err)
	}
	if _, err := s.RefundQROrder("nope", 1); !errors.Is(err, ErrNoOrder) {
		t.Errorf("RefundQROrder of nothing: %v", err)
	}
	if _, err := s.RefundQROrder(o.ID, 0); !errors.Is(err, ErrBadAmount) {
		t.Errorf("RefundQROrder of 0: %v", err)
	}
}

// A snapshot keeps a scanned order scanned (still cancellable, still paid by the customer
// after the restart) and a paid order's refunds.
func TestQRSnapshotKeepsScannedAndRefunds(t *testing.T) {
	path := t.TempDir() + "/state.json"
	paidAtOnce := QRConfig{PayDelay: Duration(time.Hour), Expiry: Duration(3 * time.Hour)}
	s := startServer(t, func(c *Config) { c.Snapshot, c.Now, c.QR = path, hourAgo, paidAtOnce })
	h := s.QRHandler()
	_, paid := qrDo(t, h, "POST", "/qr/orders", `{"amount": 3000, "tid": "`+testTID+`"}`)
	waitQR(t, h, paid.ID, QRPaid)
	if code, _ := refund(t, h, paid.ID, `{"amount": 1200}`); code != http.StatusOK {
		t.Fatalf("refund: %d", code)
	}
	// Two scanned orders: one to cancel after the restart, one the customer pays after it.
	s.cfg.QR.PayDelay = Duration(2 * time.Hour)
	_, sc := qrDo(t, h, "POST", "/qr/orders", `{"amount": 400, "tid": "`+testTID+`"}`)
	s.cfg.QR.PayDelay = Duration(time.Hour + time.Second) // scanned at once, paid a second later
	_, sp := qrDo(t, h, "POST", "/qr/orders", `{"amount": 500, "tid": "`+testTID+`"}`)
	waitQR(t, h, sc.ID, QRScanned)
	waitQR(t, h, sp.ID, QRScanned)
	s.Close()

	s2 := startServer(t, func(c *Config) { c.Snapshot, c.Now, c.QR = path, hourAgo, paidAtOnce })
	h2 := s2.QRHandler()
	if _, got := qrDo(t, h2, "GET", "/qr/orders/"+paid.ID, ""); got.Status != QRPaid || got.Refunded != 1200 {
		t.Errorf("paid order after the restart %+v", got)
	}
	if _, got := qrDo(t, h2, "GET", "/qr/orders/"+sc.ID, ""); got.Status != QRScanned || got.ScannedAt.IsZero() {
		t.Errorf("scanned order after the restart %+v", got)
	}
	if code, got := qrDo(t, h2, "POST", "/qr/orders/"+sc.ID+"/cancel", ""); code != http.StatusOK || got.Status != QRCancelled {
		t.Errorf("cancel after the restart: %d %+v", code, got)
	}
	waitQR(t, h2, sp.ID, QRPaid)
	if got := s2.Charged(testTID); got != 3000-1200+500 {
		t.Errorf("charged after the restart %d", got)
	}
	// The refunded total carries on across the restart.
	if code, _ := refund(t, h2, paid.ID, `{"amount": 1801}`); code != http.StatusConflict {
		t.Errorf("refund beyond the rest after the restart: %d", code)
	}
	if code, got := refund(t, h2, paid.ID, `{"amount": 1800}`); code != http.StatusOK || got.Refunded != 3000 {
		t.Errorf("refund of the rest after the restart: %d %+v", code, got)
	}
}
