package integration

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/hostsim"
)

// A cash register against the terminal's /v2 API: the whole terminal (emulated devices,
// the host simulator over TCP, its QR host over HTTP) driven only through the API.

// allECROps are the operations the API offers.
var allECROps = []termconfig.Operation{termconfig.OpPayment, termconfig.OpRefund, termconfig.OpVoid,
	termconfig.OpSettlement, termconfig.OpPreAuth, termconfig.OpPreAuthCompletion, termconfig.OpBalance,
	termconfig.OpCashWithdrawal, termconfig.OpTopUp, termconfig.OpReadCard, termconfig.OpEmergencyCancel,
	termconfig.OpReceiptCopy, termconfig.OpFullReport, termconfig.OpShortReport, termconfig.OpEchoTest}

type ecrRig struct {
	*payRig
	base   string
	client *http.Client
	qr     *httptest.Server
}

// newECRRig is the paying terminal with its cash-register API; qr adds a QR host whose
// simulated customer pays payDelay after an order (negative: never, and orders expire in 2 s).
func newECRRig(t *testing.T, device string, qr bool, payDelay time.Duration, change func(*termconfig.Document)) *ecrRig {
	t.Helper()
	var qrSrv *httptest.Server
	var qrURL string
	if qr {
		// The QR host is the simulator's; its URL is known only once it listens, which is
		// after the simulator is made: a handler that forwards is in place first.
		var h http.Handler
		var mu sync.Mutex
		qrSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hh := h
			mu.Unlock()
			hh.ServeHTTP(w, r)
		}))
		t.Cleanup(qrSrv.Close)
		qrURL = qrSrv.URL
		r := newPayRig(t, device, rigOptions{
			host: func(c *hostsim.Config) {
				c.QR.PayDelay = hostsim.Duration(payDelay)
				if payDelay < 0 {
					c.QR.Expiry = hostsim.Duration(2 * time.Second) // a customer who never pays: expire soon
				}
			},
			doc: ecrDoc(qrURL, change),
		})
		mu.Lock()
		h = r.host.QRHandler()
		mu.Unlock()
		return finishECRRig(t, r, qrSrv)
	}
	return finishECRRig(t, newPayRig(t, device, rigOptions{doc: ecrDoc("", change)}), nil)
}

func ecrDoc(qrURL string, change func(*termconfig.Document)) func(*termconfig.Document) {
	return func(d *termconfig.Document) {
		d.AllowedOperations = allECROps
		d.PrintProfile.StoreName, d.PrintProfile.City, d.PrintProfile.Address, d.PrintProfile.TaxID = "Kaspi Mark", "Алматы қ.", "Қонаев 11, 6", "960419351140"
		if qrURL != "" {
			d.QRHosts = []termconfig.QRHost{{Name: "demo", URL: qrURL, MerchantID: "M-1", QRLifetimeSec: 60, PollIntervalSec: 1}}
		}
		if change != nil {
			change(d)
		}
	}
}

func finishECRRig(t *testing.T, r *payRig, qr *httptest.Server) *ecrRig {
	waitFor(t, 20*time.Second, "ECR API listening", func() bool { return r.a.ECRAddr() != "" })
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the terminal's self-signed certificate
	t.Cleanup(tr.CloseIdleConnections)
	return &ecrRig{payRig: r, base: "http://" + r.a.ECRAddr(), client: &http.Client{Transport: tr, Timeout: 3 * time.Minute}, qr: qr}
}

// reply is an answer as the cash register sees it.
type reply struct {
	HTTP       int
	StatusCode int             `json:"statusCode"`
	ErrorText  string          `json:"errorText"`
	Data       json.RawMessage `json:"data"`
	raw        string
}

func (r reply) field(name string) string {
	var m map[string]any
	_ = json.Unmarshal(r.Data, &m)
	s, _ := m[name].(string)
	return s
}

// call makes one request; token "" sends no accessToken header.
func (r *ecrRig) call(t *testing.T, path string, q url.Values, token string) reply {
	t.Helper()
	u := r.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("accessToken", token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var rep reply
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%s: not an envelope: %q", path, b)
	}
	rep.HTTP, rep.raw = resp.StatusCode, string(b)
	return rep
}

// status is /v2/status data.
type status struct {
	ProcessID     string         `json:"processId"`
	Status        string         `json:"status"`
	SubStatus     string         `json:"subStatus"`
	Message       string         `json:"message"`
	TransactionID string         `json:"transactionId"`
	ChequeInfo    map[string]any `json:"chequeInfo"`
	AddInfo       map[string]any `json:"addInfo"`
	Totals        map[string]any `json:"totals"`
	Card          map[string]any `json:"card"`
	Balance       string         `json:"balance"`
}

// start begins an operation and returns its processId.
func (r *ecrRig) start(t *testing.T, path string, q url.Values, token string) string {
	t.Helper()
	rep := r.call(t, path, q, token)
	if rep.HTTP != 200 || rep.StatusCode != 0 || rep.field("status") != "wait" || rep.field("processId") == "" {
		t.Fatalf("%s: %s", path, rep.raw)
	}
	return rep.field("processId")
}

// follow polls /v2/status until the process is final, returning it and the sub-statuses seen.
func (r *ecrRig) follow(t *testing.T, id, token string) (status, []string) {
	t.Helper()
	var subs []string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		rep := r.call(t, "/v2/status", url.Values{"processId": {id}}, token)
		if rep.StatusCode != 0 {
			t.Fatalf("status %s: %s", id, rep.raw)
		}
		var st status
		if err := json.Unmarshal(rep.Data, &st); err != nil {
			t.Fatal(err)
		}
		if len(subs) == 0 || subs[len(subs)-1] != st.SubStatus {
			subs = append(subs, st.SubStatus)
		}
		if st.Status != "wait" {
			return st, subs
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("process %s not final (sub-statuses %v)", id, subs)
	return status{}, nil
}

func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func TestECRCardAndQRPayments(t *testing.T) {
	r := newECRRig(t, "IT-ECR-1", true, 2*time.Second, nil)

	// Card: the card is in the slot when the payment starts; the QR order is withdrawn.
	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	id := r.start(t, "/v2/payment", q("amount", "150"), "")
	st, subs := r.follow(t, id, "")
	r.reader.Remove()
	if st.Status != "success" || st.SubStatus != "CardTransactionSuccess" || st.TransactionID == "" {
		t.Fatalf("card payment %+v (%v)", st, subs)
	}
	c := st.ChequeInfo
	for k, want := range map[string]string{"amount": "150 ₸", "method": "card", "type": "payment", "storeName": "Kaspi Mark",
		"city": "Алматы қ.", "address": "Қонаев 11, 6", "bin": "960419351140", "terminalId": payTID, "hostResponseCode": "000",
		"rrn": st.TransactionID, "status": "Покупка. Одобрено"} {
		if c[k] != want {
			t.Errorf("chequeInfo.%s = %v, want %q", k, c[k], want)
		}
	}
	if m, _ := c["cardMask"].(string); !strings.HasPrefix(m, "622848") || !strings.HasSuffix(m, "2344") || strings.Contains(m, "6228480000000012344") {
		t.Errorf("cardMask %q", m)
	}
	if c["authorizationCode"] == "" || c["date"] == "" || c["icc"] == "" || c["pinEntered"] != true {
		t.Errorf("chequeInfo %v", c)
	}
	if got := r.host.Charged(payTID); got != 15000 {
		t.Errorf("host charged %d after the card payment", got)
	}
	cardRRN := st.TransactionID

	// QR: nobody touches the reader; the simulated customer scans, then pays.
	id = r.start(t, "/v2/payment", q("amount", "70", "owncheque", "true"), "")
	st, subs = r.follow(t, id, "")
	if st.Status != "success" || st.SubStatus != "QrTransactionSuccess" || st.ChequeInfo["orderNumber"] != st.TransactionID || st.ChequeInfo["method"] != "qr" {
		t.Fatalf("QR payment %+v (%v)", st, subs)
	}
	if !contains(subs, "WaitUser") || !contains(subs, "WaitForQrConfirmation") {
		t.Errorf("QR sub-statuses %v", subs)
	}
	if got := r.host.Charged(payTID); got != 22000 {
		t.Errorf("host charged %d after the QR payment", got)
	}
	qrOrder := st.TransactionID

	// Refunds go back by the payment's method, never beyond what is left.
	rep := r.call(t, "/v2/refund", q("amount", "200", "method", "card", "transactionId", cardRRN), "")
	if rep.HTTP != 400 || rep.StatusCode != 999 || rep.ErrorText != "Param unvalidated: amount. Must be at most 150 ₸" {
		t.Errorf("over-refund: %d %s", rep.HTTP, rep.raw)
	}
	rep = r.call(t, "/v2/refund", q("amount", "10", "method", "card", "transactionId", qrOrder), "")
	if rep.HTTP != 400 || rep.ErrorText != "Param unvalidated: transactionId. Transaction not found" {
		t.Errorf("refund by the wrong method: %d %s", rep.HTTP, rep.raw)
	}
	id = r.start(t, "/v2/refund", q("amount", "20", "method", "qr", "transactionId", qrOrder), "")
	st, _ = r.follow(t, id, "")
	if st.Status != "success" || st.ChequeInfo["type"] != "refund" || st.ChequeInfo["amount"] != "- 20 ₸" || st.ChequeInfo["method"] != "qr" {
		t.Errorf("QR refund %+v", st)
	}
	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	id = r.start(t, "/v2/refund", q("amount", "100", "method", "card", "transactionId", cardRRN), "")
	st, subs = r.follow(t, id, "")
	r.reader.Remove()
	if st.Status != "success" || st.ChequeInfo["type"] != "refund" || st.ChequeInfo["amount"] != "- 100 ₸" {
		t.Fatalf("card refund %+v (%v)", st, subs)
	}
	if _, ok := st.ChequeInfo["icc"]; ok {
		t.Errorf("a card refund's cheque carries icc: %v", st.ChequeInfo)
	}
	if _, ok := st.ChequeInfo["hostResponseCode"]; ok {
		t.Errorf("a card refund's cheque carries hostResponseCode: %v", st.ChequeInfo)
	}
	rep = r.call(t, "/v2/refund", q("amount", "51", "method", "card", "transactionId", cardRRN), "")
	if rep.ErrorText != "Param unvalidated: amount. Must be at most 50 ₸" {
		t.Errorf("refund beyond the rest: %s", rep.raw)
	}
	if got := r.host.Charged(payTID); got != 22000-2000-10000 {
		t.Errorf("host charged %d after the refunds", got)
	}

	// Final processes cannot be actualized; unknown ones are not found.
	if rep := r.call(t, "/v2/actualize", q("processId", id), ""); rep.StatusCode != 103 || rep.ErrorText != "This transaction is unable to actualize" || rep.HTTP != 200 {
		t.Errorf("actualize of a success: %d %s", rep.HTTP, rep.raw)
	}
	if rep := r.call(t, "/v2/status", q("processId", "1"), ""); rep.StatusCode != 101 || rep.ErrorText != "Process not found" || rep.HTTP != 200 {
		t.Errorf("unknown process: %s", rep.raw)
	}
	if rep := r.call(t, "/v2/actualize", q("processId", "1"), ""); rep.StatusCode != 101 {
		t.Errorf("actualize of an unknown process: %s", rep.raw)
	}

	// Every exchange is in the ECR log, card numbers masked.
	var lines []string
	if err := r.a.ECRLog().ReadRange(time.Now().Add(-time.Hour), time.Now().Add(time.Minute), func(l []byte) error {
		lines = append(lines, string(l))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) < 10 || !strings.Contains(strings.Join(lines, "\n"), "/v2/payment") {
		t.Errorf("ECR log: %d lines", len(lines))
	}
	for _, l := range lines {
		if strings.Contains(l, "6228480000000012344") {
			t.Errorf("full PAN in the ECR log: %s", l)
		}
	}
}

// Two cash registers start at once: exactly one operation runs, the other hears 107. The
// one that runs is then stopped by its cash register before any card.
func TestECROneAtATimeAndCancel(t *testing.T) {
	r := newECRRig(t, "IT-ECR-2", true, time.Hour, nil) // the QR customer never pays
	var wg sync.WaitGroup
	reps := make([]reply, 2)
	for i := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i] = r.call(t, "/v2/payment", q("amount", "10"), "")
		}()
	}
	wg.Wait()
	var id string
	busy := 0
	for _, rep := range reps {
		switch {
		case rep.StatusCode == 0:
			id = rep.field("processId")
		case rep.StatusCode == 107 && rep.HTTP == 200 && rep.ErrorText == "Could not register transaction. Last operation was not completed.":
			busy++
		default:
			t.Errorf("racing start: %d %s", rep.HTTP, rep.raw)
		}
	}
	if id == "" || busy != 1 {
		t.Fatalf("racing starts: %v", reps)
	}
	if rep := r.call(t, "/v2/refund", q("amount", "1", "method", "qr", "transactionId", "x"), ""); rep.StatusCode != 999 {
		t.Errorf("a refund of nothing while busy: %s", rep.raw) // validated before the busy check
	}
	waitFor(t, 10*time.Second, "waiting for the customer", func() bool {
		return r.call(t, "/v2/status", q("processId", id), "").field("subStatus") == "WaitUser"
	})
	if rep := r.call(t, "/v2/cancel", q("processId", id), ""); rep.StatusCode != 0 {
		t.Fatalf("cancel: %s", rep.raw)
	}
	st, _ := r.follow(t, id, "")
	if st.Status != "fail" || st.SubStatus != "ProcessCancelled" || st.Message != "Cancelled by the cash register" {
		t.Errorf("cancelled payment %+v", st)
	}
	if got := r.host.Charged(payTID); got != 0 {
		t.Errorf("host charged %d", got)
	}
	// The next operation may start.
	if err := r.reader.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	st, _ = r.follow(t, r.start(t, "/v2/payment", q("amount", "5"), ""), "")
	r.reader.Remove()
	if st.Status != "success" {
		t.Errorf("payment after the cancel %+v", st)
	}
}

// Bad calls get the exact error envelope and start nothing.
func TestECRBadInput(t *testing.T) {
	r := newECRRig(t, "IT-ECR-3", false, 0, func(d *termconfig.Document) {
		d.AllowedOperations = []termconfig.Operation{termconfig.OpRefund} // payments blocked here
	})
	long := strings.Repeat("7", 3000)
	for _, c := range []struct {
		path string
		raw  string
		http int
		code int
		text string
	}{
		{"/v2/nope", "", 404, 999, "Invalid Url. Please, contact developers"},
		{"/v2/payment", "", 400, 999, "Missing param: amount"},
		{"/v2/payment", "amount=1&amount=2", 400, 999, "Param unvalidated: amount. Must be given once"},
		{"/v2/payment", "amount=12.5", 400, 999, "Param unvalidated: amount. Must be integer"},
		{"/v2/payment", "amount=-3", 400, 999, "Param unvalidated: amount. Must be greater 0"},
		{"/v2/payment", "amount=0", 400, 999, "Param unvalidated: amount. Must be greater 0"},
		{"/v2/payment", "amount=" + long[:30], 400, 999, "Param unvalidated: amount. Must be at most 9999999999"},
		{"/v2/payment", "amount=1&x=" + long, 400, 999, "Param unvalidated: query. Must be at most 2048 characters"},
		{"/v2/payment", "amount=10", 400, 106, "Payments are blocked"},
		{"/v2/refund", "amount=10&method=cash&transactionId=1", 400, 999, "Param unvalidated: method. Unknown payment method"},
		{"/v2/refund", "amount=10&method=card&transactionId=123456789012", 400, 999, "Param unvalidated: transactionId. Transaction not found"},
		{"/v2/status", "processId=99", 200, 101, "Process not found"},
		{"/v2/actualize", "processId=99", 200, 101, "Process not found"},
		{"/v2/register", "name=Kassa", 200, 105, "Error acquired in service process"},
	} {
		req, _ := http.NewRequest(http.MethodGet, r.base+c.path+"?"+c.raw, nil)
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rep reply
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("%s: %q", c.path, b)
		}
		if resp.StatusCode != c.http || rep.StatusCode != c.code || rep.ErrorText != c.text {
			t.Errorf("%s?%.30s: %d %s, want %d %d %q", c.path, c.raw, resp.StatusCode, b, c.http, c.code, c.text)
		}
		if rep.StatusCode != 105 && len(rep.Data) > 0 && string(rep.Data) != "null" {
			t.Errorf("%s: an error with data: %s", c.path, b)
		}
	}
	// POST is not an API call.
	resp, err := r.client.Post(r.base+"/v2/payment?amount=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	if got := r.host.Charged(payTID); got != 0 {
		t.Errorf("host charged %d", got)
	}
	if n, err := r.a.Payments().Batch(); err != nil || len(n) != 0 {
		t.Errorf("batch %v %v", n, err)
	}
	if rep := r.call(t, "/v2/deviceinfo", nil, ""); rep.StatusCode != 0 || rep.field("terminalId") != payTID || rep.field("serialNum") == "" || rep.field("posNum") == "" {
		t.Errorf("deviceinfo %s", rep.raw)
	}
}

// A successful card payment whose cash register never comes back for the result is
// reversed by the terminal, which records why and tells the TMS.
func TestECRAbandonedPaymentIsReversed(t *testing.T) {
	r := newECRRig(t, "IT-ECR-4", false, 0, func(d *termconfig.Document) { d.ECR.CollectTimeoutSec = 10 })
	if err := r.reader.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	id := r.start(t, "/v2/payment", q("amount", "40"), "")
	waitFor(t, 30*time.Second, "host charged", func() bool { return r.host.Charged(payTID) == 4000 })
	r.reader.Remove()
	waitFor(t, 40*time.Second, "reversed", func() bool { return r.host.Charged(payTID) == 0 })
	waitFor(t, 20*time.Second, "ecr.abandoned event", func() bool {
		for _, env := range r.e.stream(tmsproto.StreamEvent) {
			if env.Kind == "ecr.abandoned" && strings.Contains(string(env.Body), id) {
				return true
			}
		}
		return false
	})
	st, _ := r.follow(t, id, "")
	if st.Status != "fail" || st.SubStatus != "ProcessCancelled" || !strings.Contains(st.Message, "not collected") {
		t.Errorf("abandoned payment %+v", st)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// The integrated-till operations of seed 002 through the same envelope and process model.
func TestECRTillOperations(t *testing.T) {
	r := newECRRig(t, "IT-ECR-5", false, 0, nil)
	if err := r.reader.Insert("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	defer r.reader.Remove()
	run := func(path string, v url.Values) status {
		t.Helper()
		st, subs := r.follow(t, r.start(t, path, v, ""), "")
		if st.Status != "success" {
			t.Fatalf("%s: %+v (%v)", path, st, subs)
		}
		return st
	}
	pay := run("/v2/payment", q("amount", "100"))
	void := run("/v2/void", q("transactionId", pay.TransactionID))
	if void.ChequeInfo["type"] != "void" || void.ChequeInfo["amount"] != "- 100 ₸" {
		t.Errorf("void cheque %v", void.ChequeInfo)
	}
	if rep := r.call(t, "/v2/void", q("transactionId", pay.TransactionID), ""); rep.ErrorText != "Param unvalidated: transactionId. Transaction is already voided or refunded" {
		t.Errorf("second void: %s", rep.raw)
	}
	pre := run("/v2/preauth", q("amount", "300"))
	if rep := r.call(t, "/v2/preauth/complete", q("transactionId", pre.TransactionID, "amount", "301"), ""); rep.ErrorText != "Param unvalidated: amount. Must be at most 300 ₸" {
		t.Errorf("completion above the pre-authorisation: %s", rep.raw)
	}
	comp := run("/v2/preauth/complete", q("transactionId", pre.TransactionID, "amount", "250"))
	if comp.ChequeInfo["type"] != "completion" || comp.ChequeInfo["amount"] != "250 ₸" {
		t.Errorf("completion cheque %v", comp.ChequeInfo)
	}
	if bal := run("/v2/balance", nil); bal.Balance == "" {
		t.Errorf("balance %+v", bal)
	}
	run("/v2/cashwithdrawal", q("amount", "50"))
	run("/v2/topup", q("amount", "20"))
	card := run("/v2/readcard", nil)
	if m, _ := card.Card["cardMask"].(string); !strings.HasPrefix(m, "622848") || strings.Contains(m, "6228480000000012344") || card.Card["entry"] != "chip" {
		t.Errorf("read card %v", card.Card)
	}
	rep := r.call(t, "/v2/report", q("owncheque", "true"), "")
	var rd struct {
		Totals       map[string]any   `json:"totals"`
		Transactions []map[string]any `json:"transactions"`
	}
	if err := json.Unmarshal(rep.Data, &rd); err != nil || rep.StatusCode != 0 || len(rd.Transactions) < 5 || rd.Totals["debitCount"] == nil {
		t.Errorf("full report %s", rep.raw)
	}
	if rep := r.call(t, "/v2/report", q("short", "true"), ""); rep.StatusCode != 0 || strings.Contains(rep.raw, `"transactions":[`) {
		t.Errorf("short report %s", rep.raw)
	}
	if rep := r.call(t, "/v2/receiptcopy", nil, ""); rep.StatusCode != 0 || rep.field("transactionId") == "" {
		t.Errorf("receipt copy %s", rep.raw)
	}
	if rep := r.call(t, "/v2/echo", nil, ""); rep.StatusCode != 0 || !strings.Contains(rep.raw, `"connected":true`) {
		t.Errorf("echo %s", rep.raw)
	}
	// Emergency cancel: the last operation only, never a void.
	last := r.start(t, "/v2/payment", q("amount", "30"), "")
	r.follow(t, last, "")
	charged := r.host.Charged(payTID)
	ec := run("/v2/emergencycancel", q("processId", last))
	if ec.ChequeInfo["type"] != "cancel" {
		t.Errorf("emergency cancel cheque %v", ec.ChequeInfo)
	}
	if got := r.host.Charged(payTID); got != charged-3000 {
		t.Errorf("host charged %d after the emergency cancel, was %d", got, charged)
	}
	if rep := r.call(t, "/v2/emergencycancel", q("processId", last), ""); rep.ErrorText != "Param unvalidated: processId. Operation is already cancelled" {
		t.Errorf("second emergency cancel: %s", rep.raw)
	}
	var voidPID string
	{
		rep := r.call(t, "/v2/status", q("processId", last), "")
		_ = rep
	}
	// The void's process id: the second process of this test.
	voidPID = void.ProcessID
	if rep := r.call(t, "/v2/emergencycancel", q("processId", voidPID), ""); rep.ErrorText != "Param unvalidated: processId. A void cannot be cancelled" {
		t.Errorf("emergency cancel of a void: %s", rep.raw)
	}
	set := run("/v2/settlement", nil)
	if set.Totals["balanced"] != true || set.Totals["transactions"] == nil {
		t.Errorf("settlement %v", set.Totals)
	}
	if s := r.a.Payments().Status(); s.Txns != 0 {
		t.Errorf("batch after settlement %+v", s)
	}
}

// Protected mode: HTTPS only, a cash register registered with the operator's approval on
// the PIN pad, tokens checked on every call, revoke rotating them.
func TestECRProtectedMode(t *testing.T) {
	r := newECRRig(t, "IT-ECR-6", false, 0, func(d *termconfig.Document) { d.ECR.ProtectedMode = true })
	r.base = "https://" + r.a.ECRAddr()
	// Plain HTTP is refused.
	if resp, err := http.Get("http://" + r.a.ECRAddr() + "/v2/deviceinfo"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(b), "serialNum") {
			t.Errorf("plain HTTP answered %d %s", resp.StatusCode, b)
		}
	}
	for _, c := range []struct{ token, text string }{{"", "Authorization failed"}, {"0123456789abcdef0123456789abcdef", "Authorization failed"}} {
		if rep := r.call(t, "/v2/deviceinfo", nil, c.token); rep.HTTP != 401 || rep.StatusCode != 999 || rep.ErrorText != c.text {
			t.Errorf("token %q: %d %s", c.token, rep.HTTP, rep.raw)
		}
	}
	// Registration waits for the operator: the confirm key on the PIN pad.
	done := make(chan reply, 1)
	go func() { done <- r.call(t, "/v2/register", q("name", "Kassa1"), "") }()
	waitFor(t, 10*time.Second, "registration pending", func() bool { _, ok := r.a.ECRAccess().Pending(); return ok })
	if rep := r.call(t, "/v2/register", q("name", "Kassa2"), ""); rep.StatusCode != 105 || !strings.Contains(rep.raw, `"message":"Register Error. Last register request not completed"`) {
		t.Errorf("second register: %s", rep.raw)
	}
	r.pad.Press(0x01) // confirm
	var reg reply
	select {
	case reg = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("registration not approved from the pad")
	}
	access, refresh := reg.field("accessToken"), reg.field("refreshToken")
	if reg.StatusCode != 0 || len(access) != 32 || len(refresh) != 32 || reg.field("expirationDate") == "" {
		t.Fatalf("register: %s", reg.raw)
	}
	if rep := r.call(t, "/v2/deviceinfo", nil, access); rep.StatusCode != 0 || rep.field("terminalId") != payTID {
		t.Errorf("deviceinfo with the token: %s", rep.raw)
	}
	// Revoke: a wrong refresh token is refused; the right one rotates the pair at once.
	if rep := r.call(t, "/v2/revoke", q("name", "Kassa1", "refreshToken", strings.Repeat("0", 32)), access); rep.StatusCode != 105 || !strings.Contains(rep.raw, "Revoke Error. Wrong refresh token") {
		t.Errorf("revoke with a wrong refresh token: %s", rep.raw)
	}
	if rep := r.call(t, "/v2/revoke", q("name", "Kassa1", "refreshToken", ""), access); rep.ErrorText != "Param unvalidated: refreshToken. It's empty" {
		t.Errorf("revoke with an empty refresh token: %s", rep.raw)
	}
	rev := r.call(t, "/v2/revoke", q("name", "Kassa1", "refreshToken", refresh), access)
	if rev.StatusCode != 0 || rev.field("accessToken") == access {
		t.Fatalf("revoke: %s", rev.raw)
	}
	if rep := r.call(t, "/v2/deviceinfo", nil, access); rep.HTTP != 401 || rep.ErrorText != "Session expires and need to be updated" {
		t.Errorf("the old token after revoke: %d %s", rep.HTTP, rep.raw)
	}
	if rep := r.call(t, "/v2/status", q("processId", "5"), rev.field("accessToken")); rep.StatusCode != 101 {
		t.Errorf("the new token: %s", rep.raw)
	}
	// A payment with the token, recorded under the cash register's name in the exchange log.
	if err := r.reader.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	tok := rev.field("accessToken")
	st, _ := r.follow(t, r.start(t, "/v2/payment", q("amount", "12"), tok), tok)
	r.reader.Remove()
	if st.Status != "success" {
		t.Errorf("payment in protected mode %+v", st)
	}
	var named bool
	_ = r.a.ECRLog().ReadRange(time.Now().Add(-time.Hour), time.Now().Add(time.Minute), func(l []byte) error {
		if strings.Contains(string(l), "Kassa1") {
			named = true
		}
		for _, secret := range []string{access, refresh, tok} {
			if strings.Contains(string(l), secret) {
				t.Errorf("a token in the ECR log: %s", l)
			}
		}
		return nil
	})
	if !named {
		t.Error("the cash register's name is not in the ECR log")
	}
}

// The bank does not answer, nor to the reversal: the outcome is unknown until /v2/actualize
// lets the engine reverse it; the cash register then hears fail, and nothing is charged.
func TestECRUnknownThenActualize(t *testing.T) {
	r := newECRRig(t, "IT-ECR-7", false, 0, func(d *termconfig.Document) {
		d.HostParameters.ResponseTimeoutSec = 5
	})
	if err := r.reader.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	for _, mti := range []string{"0200", "0400"} {
		if err := r.host.AddFault(hostsim.Fault{Kind: hostsim.FaultNoAnswer, MTI: mti, Count: 1}); err != nil {
			t.Fatal(err)
		}
	}
	id := r.start(t, "/v2/payment", q("amount", "25"), "")
	st, subs := r.follow(t, id, "")
	r.reader.Remove()
	if st.Status != "unknown" || st.SubStatus != "CardTransactionFailure" || st.Message == "" {
		t.Fatalf("no answer: %+v (%v)", st, subs)
	}
	if !contains(subs, "ProcessingCard") {
		t.Errorf("sub-statuses %v", subs)
	}
	rep := r.call(t, "/v2/actualize", q("processId", id), "")
	var got status
	if err := json.Unmarshal(rep.Data, &got); err != nil || rep.StatusCode != 0 {
		// The background reversal may have gone first; actualize still answers from the journal.
		t.Fatalf("actualize: %s", rep.raw)
	}
	if got.Status != "fail" || got.SubStatus != "CardTransactionFailure" {
		t.Errorf("actualized %+v", got)
	}
	if rep := r.call(t, "/v2/actualize", q("processId", id), ""); rep.StatusCode != 103 {
		t.Errorf("actualize of a final process: %s", rep.raw)
	}
	if c := r.host.Charged(payTID); c != 0 {
		t.Errorf("host charged %d", c)
	}
}

// A QR-only terminal whose customer never pays: the code expires and the payment fails.
func TestECRQRExpires(t *testing.T) {
	r := newECRRig(t, "IT-ECR-8", true, -1, func(d *termconfig.Document) { d.ECR.QROnly = true })
	id := r.start(t, "/v2/payment", q("amount", "9"), "")
	st, subs := r.follow(t, id, "")
	if st.Status != "fail" || st.SubStatus != "QrTransactionFailure" || st.Message != "QR code expired" {
		t.Errorf("expired QR %+v (%v)", st, subs)
	}
	if rep := r.call(t, "/v2/readcard", nil, ""); rep.HTTP != 400 || rep.StatusCode != 106 {
		t.Errorf("read card on a QR-only terminal: %s", rep.raw)
	}
}
