package hostsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzQRRefund: any body into POST /qr/orders/{id}/refund of a paid order. The answer is
// 200, 400 or 409, never anything else; 200 exactly when the body's amount is a positive
// amount within the order, and then the order's refunded total is that amount.
func FuzzQRRefund(f *testing.F) {
	for _, b := range []string{`{"amount": 1000}`, `{"amount": "12.13"}`, `{"amount": 0}`, `{"amount": 1e2}`, `{`, `{"amount": 99999999999999999999}`} {
		f.Add([]byte(b))
	}
	s, err := New(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	s.cfg.QR.PayDelay = -1 // nobody pays: the test does
	o, err := s.NewQROrder(testTID, 5_000, "")
	if err != nil {
		f.Fatal(err)
	}
	s.mu.Lock()
	s.payQR(s.st.QR[o.ID])
	s.mu.Unlock()
	h := s.QRHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		// Each input starts from the paid order with nothing refunded.
		s.mu.Lock()
		s.st.QR[o.ID].Refunded = 0
		s.st.Entries = s.st.Entries[:1]
		s.mu.Unlock()
		want, werr := decodeQRAmount(strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/qr/orders/"+o.ID+"/refund", strings.NewReader(string(body))))
		switch {
		case werr != nil || want <= 0:
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("bad amount (%d, %v) answered %d", want, werr, rec.Code)
			}
		case want > 5_000:
			if rec.Code != http.StatusConflict {
				t.Fatalf("amount %d beyond the order answered %d", want, rec.Code)
			}
		default:
			var r QRRefund
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &r) != nil || r.Refunded != want || r.RefundID == "" {
				t.Fatalf("amount %d: %d %s", want, rec.Code, rec.Body)
			}
		}
	})
}
