package hostsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func qrDo(t *testing.T, h http.Handler, method, path, body string) (int, QROrder) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var o QROrder
	_ = json.Unmarshal(rec.Body.Bytes(), &o)
	return rec.Code, o
}

func waitQR(t *testing.T, h http.Handler, id, status string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, o := qrDo(t, h, "GET", "/qr/orders/"+id, "")
		if o.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s: %s, want %s", id, o.Status, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQRHost(t *testing.T) {
	s := startServer(t, nil)
	h := s.QRHandler()

	code, o := qrDo(t, h, "POST", "/qr/orders", `{"amount": 2500, "currency": "156", "tid": "`+testTID+`"}`)
	if code != http.StatusCreated || o.ID == "" || !strings.Contains(o.QR, o.ID) || o.Status != QRPending {
		t.Fatalf("create: %d %+v", code, o)
	}
	waitQR(t, h, o.ID, QRPaid)
	if got := s.Charged(testTID); got != 2500 {
		t.Errorf("charged %d", got)
	}
	if code, _ := qrDo(t, h, "POST", "/qr/orders/"+o.ID+"/cancel", ""); code != http.StatusConflict {
		t.Errorf("cancel of a paid order: %d", code)
	}

	// An amount ending in .13: the customer cancels.
	_, o13 := qrDo(t, h, "POST", "/qr/orders", `{"amount": "12.13", "tid": "`+testTID+`"}`)
	if o13.Amount != 1213 {
		t.Errorf("amount %d", o13.Amount)
	}
	waitQR(t, h, o13.ID, QRCancelled)

	// Cancelled by the terminal before the customer pays.
	s.cfg.QR.PayDelay = Duration(time.Hour)
	_, oc := qrDo(t, h, "POST", "/qr/orders", `{"amount": 700, "tid": "`+testTID+`"}`)
	if code, got := qrDo(t, h, "POST", "/qr/orders/"+oc.ID+"/cancel", ""); code != http.StatusOK || got.Status != QRCancelled {
		t.Errorf("cancel: %d %+v", code, got)
	}
	// Never paid: expires.
	s.cfg.QR.PayDelay, s.cfg.QR.Expiry = -1, Duration(50*time.Millisecond)
	_, oe := qrDo(t, h, "POST", "/qr/orders", `{"amount": 800, "tid": "`+testTID+`"}`)
	waitQR(t, h, oe.ID, QRExpired)

	if got := s.Charged(testTID); got != 2500 {
		t.Errorf("charged at the end %d", got)
	}
	for _, bad := range []string{`{"amount": 0, "tid": "` + testTID + `"}`, `{"amount": 5, "tid": "nope"}`, `{"amount": 5}`, `{`} {
		if code, _ := qrDo(t, h, "POST", "/qr/orders", bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, code)
		}
	}
	if code, _ := qrDo(t, h, "GET", "/qr/orders/nope", ""); code != http.StatusNotFound {
		t.Errorf("unknown order: %d", code)
	}
}

func TestControlAPI(t *testing.T) {
	s := startServer(t, nil)
	h := s.ControlHandler()
	do := func(method, path, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := do("POST", "/faults", `{"kind":"delay","mti":"0200","count":2,"delay":"1s"}`); code != 200 || !strings.Contains(body, `"delay"`) {
		t.Fatalf("add fault: %d %s", code, body)
	}
	if f := s.Faults(); len(f) != 1 || f[0].Delay != Duration(time.Second) || f[0].Count != 2 {
		t.Errorf("faults %+v", f)
	}
	if code, _ := do("POST", "/faults", `{"kind":"nope"}`); code != 400 {
		t.Errorf("bad fault: %d", code)
	}
	if code, _ := do("PUT", "/faults", `[{"kind":"garbage"},{"kind":"drop","mti":"0400"}]`); code != 200 || len(s.Faults()) != 2 {
		t.Errorf("replace faults: %d %+v", code, s.Faults())
	}
	if code, _ := do("DELETE", "/faults", ""); code != 200 || len(s.Faults()) != 0 {
		t.Errorf("clear faults: %d", code)
	}
	c := newTerm(t, s)
	c.signIn(NetSignInDouble)
	wantCode(t, "purchase", c.must(c.purchase(panDebit, "", 900), true), "00")
	if code, body := do("GET", "/ledger/"+testTID, ""); code != 200 || !strings.Contains(body, `"charged":900`) {
		t.Errorf("ledger: %d %s", code, body)
	}
	if code, body := do("GET", "/ledger/"+testTID+"/batches/1", ""); code != 200 || !strings.Contains(body, "001000000000900") {
		t.Errorf("batch totals: %d %s", code, body)
	}
	if code, body := do("GET", "/terminals/"+testTID, ""); code != 200 || !strings.Contains(body, `"signedIn":true`) {
		t.Errorf("terminal: %d %s", code, body)
	}
	if code, _ := do("GET", "/accounts/"+panDebit, ""); code != 200 {
		t.Errorf("account: %d", code)
	}
	if code, body := do("GET", "/seen", ""); code != 200 || !strings.Contains(body, `"0200":1`) {
		t.Errorf("seen: %d %s", code, body)
	}
}
