package qrpay

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// answers are the provider's answers of every kind, as internal/hostsim writes them.
var answers = []string{
	`{"orderId":"QR250101A1B2C3D4E5F60708","tid":"10000001","amount":2500,"currency":"156","qr":"hostsim://qr/pay?order=QR250101A1B2C3D4E5F60708&amount=2500&currency=156&tid=10000001","status":"pending","created":"2025-01-01T10:00:00Z","updated":"2025-01-01T10:00:00Z","payAt":"2025-01-01T10:00:03Z","expiresAt":"2025-01-01T10:02:00Z"}`,
	`{"orderId":"QR1","amount":900,"currency":"156","qr":"x","status":"scanned","expiresAt":"2025-01-01T10:02:00+08:00","scannedAt":"2025-01-01T10:00:01Z"}`,
	`{"orderId":"QR1","amount":900,"currency":"156","qr":"x","status":"paid","rrn":"100003000001","refunded":400,"expiresAt":"2025-01-01T10:02:00.123456789Z"}`,
	`{"orderId":"QR1","amount":900,"status":"paid","rrn":"100003000001","refunded":900,"refundId":"RF250101AABBCCDDEEFF0011"}`,
	`{"orderId":"QR1","amount":900,"status":"cancelled"}`,
	`{"orderId":"QR1","amount":900,"status":"expired"}`,
}

// The decoder takes the provider's orders and refuses anything that is not one.
func TestDecodeOrder(t *testing.T) {
	o, err := decodeOrder([]byte(answers[0]))
	if err != nil {
		t.Fatal(err)
	}
	want := Order{ID: "QR250101A1B2C3D4E5F60708", Status: StatusPending, Amount: 2500, Currency: "156",
		QR:        "hostsim://qr/pay?order=QR250101A1B2C3D4E5F60708&amount=2500&currency=156&tid=10000001",
		ExpiresAt: time.Date(2025, 1, 1, 10, 2, 0, 0, time.UTC)}
	if !sameOrder(o, want) {
		t.Errorf("decoded %+v, want %+v", o, want)
	}
	for _, a := range answers {
		if _, err := decodeOrder([]byte(a)); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	o, rid, err := decodeRefund([]byte(answers[3]))
	if err != nil || rid != "RF250101AABBCCDDEEFF0011" || o.Refunded != 900 || o.Status != StatusPaid {
		t.Errorf("refund answer: %+v %q %v", o, rid, err)
	}
	if _, _, err := decodeRefund([]byte(answers[2])); !errors.Is(err, ErrBadResponse) {
		t.Errorf("refund answer without refundId: %v", err)
	}

	for _, bad := range []string{
		``, `null`, `[]`, `"QR1"`, `{}`, `{"orderId":"QR1","amount":900}`, `{"status":"paid","amount":900}`,
		`{"orderId":"","status":"paid","amount":900}`, `{"orderId":"QR 1","status":"paid","amount":900}`,
		`{"orderId":"QR1","status":"PAID","amount":900}`, `{"orderId":"QR1","status":"refunded","amount":900}`,
		`{"orderId":"QR1","status":"paid"}`, `{"orderId":"QR1","status":"paid","amount":0}`,
		`{"orderId":"QR1","status":"paid","amount":-5}`, `{"orderId":"QR1","status":"paid","amount":9.5}`,
		`{"orderId":"QR1","status":"paid","amount":"900"}`, `{"orderId":"QR1","status":"paid","amount":900,"refunded":901}`,
		`{"orderId":"QR1","status":"paid","amount":900,"refunded":-1}`, `{"orderId":"QR1","status":"paid","amount":900,"rrn":"a\nb"}`,
		`{"orderId":"QR1","status":"paid","amount":900,"expiresAt":"tomorrow"}`, `{"orderId":1,"status":"paid","amount":900}`,
		`{"orderId":"QR1","status":"paid","amount":900} trailing`, `{"orderId":"QR1","status":"paid","amount":900,"qr":"` + strings.Repeat("q", maxQR+1) + `"}`,
		`{"orderId":"` + strings.Repeat("1", maxID+1) + `","status":"paid","amount":900}`,
	} {
		if o, err := decodeOrder([]byte(bad)); !errors.Is(err, ErrBadResponse) {
			t.Errorf("%.80s: %+v %v", bad, o, err)
		}
	}
	if _, err := decodeOrderID([]byte(answers[4]), "QR2"); !errors.Is(err, ErrBadResponse) {
		t.Errorf("another order's answer: %v", err)
	}
}

func sameOrder(a, b Order) bool {
	ta, tb := a.ExpiresAt, b.ExpiresAt
	a.ExpiresAt, b.ExpiresAt = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// wire writes an order the way a provider does.
func wire(o Order) ([]byte, error) {
	m := map[string]any{"orderId": o.ID, "status": o.Status, "amount": o.Amount, "currency": o.Currency,
		"qr": o.QR, "rrn": o.RRN, "refunded": o.Refunded}
	if !o.ExpiresAt.IsZero() {
		m["expiresAt"] = o.ExpiresAt
	}
	return json.Marshal(m)
}

// FuzzDecodeOrder: the decoder never panics, refuses with ErrBadResponse only, and what it
// accepts is an order within the bounds that reads back the same when written again.
func FuzzDecodeOrder(f *testing.F) {
	for _, a := range answers {
		f.Add([]byte(a))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := decodeOrder(data)
		if _, _, rerr := decodeRefund(data); rerr != nil && !errors.Is(rerr, ErrBadResponse) {
			t.Fatalf("refund decode error %v is not ErrBadResponse", rerr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error %v is not ErrBadResponse", err)
			}
			return
		}
		if !token(o.ID, maxID) || !o.Status.known() || o.Amount <= 0 || o.Refunded < 0 || o.Refunded > o.Amount ||
			len(o.QR) > maxQR || len(o.RRN) > maxRRN || len(o.Currency) > maxCurrency {
			t.Fatalf("accepted %+v", o)
		}
		again, err := wire(o)
		if err != nil {
			return // a time JSON cannot write (a year past 9999 read from an offset)
		}
		back, err := decodeOrder(again)
		if err != nil || !sameOrder(back, o) {
			t.Fatalf("round trip: %+v → %s → %+v %v", o, again, back, err)
		}
	})
}
