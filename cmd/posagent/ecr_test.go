package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/posagent/posagent/agent/ecr/ecrclient"
)

// Bodies in the shape of the spec's examples (seed 003 §4.15–4.22).
const (
	ecrStarted    = `{"data":{"processId":"1678696290407","status":"wait"},"statusCode":0}`
	ecrCardResult = `{"data":{"addInfo":{"IsOffer":false,"LoanTerm":0,"ProductType":"Gold"},
		"chequeInfo":{"address":"Қонаев 11, 6","amount":"1 ₸","authorizationCode":"665425","bin":"960419351140",
		"cardMask":"440043*****6389","city":" Алматы қ.","date":"13.03.23 14:31:39","hostResponseCode":"000",
		"icc":"Visa Debit","method":"card","rrn":"307208187011","status":" Kaspi Gold-ман сатып алу. Мақұлданды",
		"storeName":"Kaspi Mark","terminalId":"31452963","type":"payment","pinEntered":true},
		"processId":"1678696290407","status":"success","subStatus":"CardTransactionSuccess","transactionId":"307208187011"},
		"statusCode":0}`
	ecrFailed = `{"data":{"message":"Сатып алымды жою; Сатып алушы сатып алуды жойды","processId":"1678696290407",
		"status":"fail","subStatus":"QrTransactionFailure"},"statusCode":0}`
	ecrUnknown = `{"data":{"message":"Операция жойылды","processId":"1678696290407","status":"unknown",
		"subStatus":"ProcessCancelled"},"statusCode":0}`
	ecrBusy       = `{"errorText":"Could not register transaction. Last operation was not completed.","statusCode":107}`
	ecrRegistered = `{"data":{"accessToken":"99af370951a7b154a4ebd0c554d7eb24","expirationDate":"Mar 7, 2023 15:02:56","refreshToken":"d4a853dd320d179fde3271901c116bec"},"statusCode":0}`
	ecrRevoked    = `{"data":{"accessToken":"665495959cd859bce7b887cff45e79ba","expirationDate":"Mar 7, 2023 15:15:50","refreshToken":"343755b21c9388eda4a0a221d560410c"},"statusCode":0}`
	ecrDevice     = `{"data":{"posNum":"0","serialNum":"00043010171","terminalId":"31452963"},"statusCode":0}`
)

func waitState(sub string) string {
	return `{"data":{"processId":"1678696290407","status":"wait","subStatus":"` + sub + `"},"statusCode":0}`
}

type ecrReply struct {
	code int
	body string
}

type ecrRequest struct {
	path  string
	query url.Values
	token string
	has   bool
}

// ecrTerminal answers each path from a queue (the last answer repeats); handle, when set,
// answers instead.
type ecrTerminal struct {
	srv *httptest.Server

	mu      sync.Mutex
	replies map[string][]ecrReply
	reqs    []ecrRequest
	handle  func(ecrRequest) (ecrReply, bool)
}

func newECRTerminal(t *testing.T) *ecrTerminal {
	f := &ecrTerminal{replies: map[string][]ecrReply{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *ecrTerminal) on(path string, bodies ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bodies {
		f.replies[path] = append(f.replies[path], ecrReply{http.StatusOK, b})
	}
}

func (f *ecrTerminal) onCode(path string, code int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[path] = append(f.replies[path], ecrReply{code, body})
}

func (f *ecrTerminal) requests() []ecrRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ecrRequest(nil), f.reqs...)
}

func (f *ecrTerminal) find(path string) (ecrRequest, bool) {
	for _, r := range f.requests() {
		if r.path == path {
			return r, true
		}
	}
	return ecrRequest{}, false
}

func (f *ecrTerminal) serve(w http.ResponseWriter, r *http.Request) {
	_, has := r.Header[http.CanonicalHeaderKey(ecrclient.HeaderToken)]
	req := ecrRequest{path: r.URL.Path, query: r.URL.Query(), token: r.Header.Get(ecrclient.HeaderToken), has: has}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	handle := f.handle
	q := f.replies[r.URL.Path]
	rep := ecrReply{http.StatusNotFound, `{"errorText":"Invalid Url. Please, contact developers","statusCode":999}`}
	switch {
	case len(q) == 1:
		rep = q[0]
	case len(q) > 1:
		rep = q[0]
		f.replies[r.URL.Path] = q[1:]
	}
	f.mu.Unlock()
	if handle != nil {
		if hr, ok := handle(req); ok {
			rep = hr
		}
	}
	w.WriteHeader(rep.code)
	_, _ = w.Write([]byte(rep.body))
}

func runECR(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"ecr"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

var clock = `\d\d:\d\d:\d\d`

func TestECRPayFollowsToTheReceipt(t *testing.T) {
	f := newECRTerminal(t)
	f.on(ecrclient.PathPayment, ecrStarted)
	f.on(ecrclient.PathStatus, waitState("Initialize"), waitState("WaitUser"), waitState("WaitUser"),
		waitState("ProcessingCard"), ecrCardResult)
	code, out, errs := runECR(t, "-url", f.srv.URL, "-poll", "1ms", "pay", "15", "-owncheque")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if r, _ := f.find(ecrclient.PathPayment); r.query.Get("amount") != "15" || r.query.Get("owncheque") != "true" {
		t.Errorf("payment query %v", r.query)
	}
	lines := strings.Split(out, "\n")
	want := []string{
		`^process 1678696290407$`,
		`^` + clock + ` wait      Initialize$`,
		`^` + clock + ` wait      WaitUser$`,
		`^` + clock + ` wait      ProcessingCard$`,
		`^` + clock + ` success   CardTransactionSuccess  rrn=307208187011 auth=665425 card=440043\*{5}6389 amount="1 ₸"$`,
		`^receipt:$`,
	}
	if len(lines) < len(want) {
		t.Fatalf("output:\n%s", out)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}
	for _, s := range []string{"  store           Kaspi Mark\n", "  city            Алматы қ.\n",
		"  card product    Visa Debit\n", "  PIN entered     yes\n", "  authorization   665425\n",
		"transaction 307208187011\n", "product Gold, loan term 0, offer false\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestECRFailedAndUnknownExit1(t *testing.T) {
	for _, tc := range []struct {
		body, line, stderr string
	}{
		{ecrFailed, `fail      QrTransactionFailure    message="Сатып алымды жою; Сатып алушы сатып алуды жойды"`,
			"failed: Сатып алымды жою"},
		{ecrUnknown, `unknown   ProcessCancelled        message="Операция жойылды"`, "posagent ecr actualize 1678696290407"},
	} {
		f := newECRTerminal(t)
		f.on(ecrclient.PathPayment, ecrStarted)
		f.on(ecrclient.PathStatus, waitState("WaitUser"), tc.body)
		code, out, errs := runECR(t, "-url", f.srv.URL, "-poll", "1ms", "pay", "15")
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s", code, out)
		}
		if !strings.Contains(out, tc.line+"\n") || !strings.Contains(errs, tc.stderr) {
			t.Errorf("stdout:\n%s\nstderr:\n%s", out, errs)
		}
	}
}

func TestECRErrorAnswers(t *testing.T) {
	f := newECRTerminal(t)
	f.on(ecrclient.PathPayment, ecrBusy)
	f.onCode(ecrclient.PathDeviceInfo, http.StatusUnauthorized, `{"errorText":"Authorization failed","statusCode":999}`)

	code, out, errs := runECR(t, "-url", f.srv.URL, "pay", "15")
	if code != 1 || out != "" || !strings.Contains(errs, "code 107 Could not register transaction. Last operation was not completed.") {
		t.Errorf("busy: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	if _, polled := f.find(ecrclient.PathStatus); polled {
		t.Error("polled a process that never started")
	}
	// With -json the error answer is printed as it came.
	code, out, _ = runECR(t, "-url", f.srv.URL, "-json", "pay", "15")
	var env ecrclient.Envelope
	if code != 1 || json.Unmarshal([]byte(out), &env) != nil || env.StatusCode != 107 || env.ErrorText == "" {
		t.Errorf("busy -json: exit %d, stdout %q", code, out)
	}
	code, _, errs = runECR(t, "-url", f.srv.URL, "info")
	if code != 1 || !strings.Contains(errs, "HTTP 401 Unauthorized: code 999 Authorization failed") {
		t.Errorf("401: exit %d, stderr %q", code, errs)
	}
	// Nobody listening: exit 1 with the cause.
	code, _, errs = runECR(t, "-url", "http://127.0.0.1:1", "echo")
	if code != 1 || !strings.Contains(errs, "GET /v2/echo") {
		t.Errorf("no terminal: exit %d, stderr %q", code, errs)
	}
}

func TestECRUsageErrors(t *testing.T) {
	f := newECRTerminal(t)
	for _, args := range [][]string{
		{},
		{"dance"},
		{"pay"},
		{"pay", "abc"},
		{"pay", "0"},
		{"pay", "-5"},
		{"pay", "10.50"},
		{"pay", "10", "20"},
		{"pay", "10", "-tip"},
		{"refund", "10", "-txn", "1"},
		{"refund", "10", "-method", "cash", "-txn", "1"},
		{"refund", "10", "-method", "card"},
		{"void"},
		{"void", "T", "-amount", "x"},
		{"complete", "T"},
		{"status"},
		{"copy", "a", "b"},
		{"echo", "x"},
		{"call"},
		{"call", "echo", "novalue"},
		{"revoke", "K"},
		{"revoke", "K", "-refresh", "r", "-from", "f"},
		{"register"},
		{"-token", "a", "-token-file", "b", "info"},
		{"-token-file", filepath.Join(t.TempDir(), "missing"), "info"},
		{"-nosuchflag", "info"},
	} {
		code, _, errs := runECR(t, append([]string{"-url", f.srv.URL}, args...)...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errs)
		}
		if errs == "" {
			t.Errorf("%q: nothing said on stderr", args)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("usage errors made %d requests", n)
	}
}

func TestECRHelp(t *testing.T) {
	code, _, errs := runECR(t, "-h")
	if code != 0 || !strings.Contains(errs, "refund AMOUNT -method card|qr -txn ID") || !strings.Contains(errs, "-insecure") {
		t.Errorf("exit %d\n%s", code, errs)
	}
	var out bytes.Buffer
	if run([]string{"help"}, &out, &out) != 0 || !strings.Contains(out.String(), "\n  ecr ") {
		t.Errorf("posagent help does not list ecr:\n%s", out.String())
	}
}

// -json prints each envelope as one line: the start, then each change.
func TestECRJSONLines(t *testing.T) {
	f := newECRTerminal(t)
	f.on(ecrclient.PathPayment, ecrStarted)
	f.on(ecrclient.PathStatus, waitState("WaitUser"), waitState("WaitUser"), ecrCardResult)
	code, out, errs := runECR(t, "-url", f.srv.URL, "-poll", "1ms", "-json", "pay", "15")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want start + 2 changes:\n%s", len(lines), out)
	}
	var envs []ecrclient.Envelope
	for _, l := range lines {
		var env ecrclient.Envelope
		if err := json.Unmarshal([]byte(l), &env); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		envs = append(envs, env)
	}
	if st, err := ecrclient.DecodeStarted(envs[0].Data); err != nil || st.ProcessID != "1678696290407" {
		t.Errorf("first line %s: %+v %v", lines[0], st, err)
	}
	last, err := ecrclient.DecodeStatus(envs[2].Data)
	if err != nil || last.Status != "success" || last.ChequeInfo.RRN != "307208187011" {
		t.Errorf("last line %s: %+v %v", lines[2], last, err)
	}
	if strings.Contains(out, `\u`) {
		t.Errorf("text was escaped: %s", out)
	}
}

// Each verb sends its path and parameters, and says something readable.
func TestECRVerbs(t *testing.T) {
	done := `{"data":{"processId":"1678696290407","status":"success","subStatus":"Done","transactionId":"T9",
		"totals":{"batch":4,"debitCount":2,"debit":300},"balance":"1 500 ₸"},"statusCode":0}`
	for _, tc := range []struct {
		args  []string
		path  string
		query url.Values
		reply string
		out   string
	}{
		{[]string{"refund", "-method", "qr", "7", "-txn", "504711333"}, ecrclient.PathRefund,
			url.Values{"amount": {"7"}, "method": {"qr"}, "transactionId": {"504711333"}, "owncheque": {"false"}}, ecrStarted, "process 1678696290407"},
		{[]string{"void", "307208187011", "-amount", "5", "-owncheque"}, ecrclient.PathVoid,
			url.Values{"transactionId": {"307208187011"}, "amount": {"5"}, "owncheque": {"true"}}, ecrStarted, "txn=T9"},
		{[]string{"void", "307208187011"}, ecrclient.PathVoid,
			url.Values{"transactionId": {"307208187011"}, "owncheque": {"false"}}, ecrStarted, "process"},
		{[]string{"settle"}, ecrclient.PathSettlement, url.Values{"owncheque": {"false"}}, ecrStarted, "totals:\n  batch: 4\n  debitCount: 2\n  debit: 300\n"},
		{[]string{"preauth", "100"}, ecrclient.PathPreauth, url.Values{"amount": {"100"}, "owncheque": {"false"}}, ecrStarted, "process"},
		{[]string{"complete", "T1", "90"}, ecrclient.PathPreauthComplete,
			url.Values{"transactionId": {"T1"}, "amount": {"90"}, "owncheque": {"false"}}, ecrStarted, "process"},
		{[]string{"balance"}, ecrclient.PathBalance, url.Values{}, ecrStarted, "balance: 1 500 ₸\n"},
		{[]string{"withdraw", "20"}, ecrclient.PathCashWithdrawal, url.Values{"amount": {"20"}, "owncheque": {"false"}}, ecrStarted, "process"},
		{[]string{"topup", "30", "-owncheque"}, ecrclient.PathTopUp, url.Values{"amount": {"30"}, "owncheque": {"true"}}, ecrStarted, "process"},
		{[]string{"readcard"}, ecrclient.PathReadCard, url.Values{}, ecrStarted, "process"},
		{[]string{"emergency-cancel", "1678090451700"}, ecrclient.PathEmergencyCancel,
			url.Values{"processId": {"1678090451700"}, "owncheque": {"false"}}, ecrStarted, "process"},
		{[]string{"follow", "1678696290407"}, ecrclient.PathStatus, url.Values{"processId": {"1678696290407"}}, done, "success   Done"},
		{[]string{"status", "1678696290407"}, ecrclient.PathStatus, url.Values{"processId": {"1678696290407"}}, waitState("WaitUser"), "wait      WaitUser"},
		{[]string{"actualize", "1678696290407"}, ecrclient.PathActualize, url.Values{"processId": {"1678696290407"}}, done, "success   Done"},
		{[]string{"cancel", "1678696290407"}, ecrclient.PathCancel, url.Values{"processId": {"1678696290407"}},
			waitState("ProcessingCard"), "cancel requested; the terminal ends the process (posagent ecr follow 1678696290407)\n"},
		{[]string{"report", "-short"}, ecrclient.PathReport, url.Values{"short": {"true"}},
			`{"data":{"batch":4,"sales":{"count":2,"amount":300},"lines":[{"rrn":"1"},"x"]},"statusCode":0}`,
			"batch: 4\nsales:\n  count: 2\n  amount: 300\nlines:\n  -\n    rrn: 1\n  - x\n"},
		{[]string{"copy"}, ecrclient.PathReceiptCopy, url.Values{}, `{"data":{"text":"COPY"},"statusCode":0}`, "text: COPY\n"},
		{[]string{"copy", "307208187011"}, ecrclient.PathReceiptCopy, url.Values{"transactionId": {"307208187011"}},
			`{"data":{"text":"COPY"},"statusCode":0}`, "text: COPY\n"},
		{[]string{"echo"}, ecrclient.PathEcho, url.Values{}, `{"statusCode":0}`, "echo ok\n"},
		{[]string{"info"}, ecrclient.PathDeviceInfo, url.Values{}, ecrDevice, "serialNum   00043010171\nterminalId  31452963\n"},
		{[]string{"call", "payment", "amount=3", "owncheque=false"}, ecrclient.PathPayment,
			url.Values{"amount": {"3"}, "owncheque": {"false"}}, ecrStarted, `"processId": "1678696290407"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f := newECRTerminal(t)
			f.on(tc.path, tc.reply)
			if tc.reply == ecrStarted {
				f.on(ecrclient.PathStatus, done)
			}
			code, out, errs := runECR(t, append([]string{"-url", f.srv.URL, "-poll", "1ms"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errs)
			}
			r, ok := f.find(tc.path)
			if !ok || !reflect.DeepEqual(r.query, tc.query) {
				t.Errorf("sent %s %v, want %s %v", r.path, r.query, tc.path, tc.query)
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("output lacks %q:\n%s", tc.out, out)
			}
		})
	}
}

// An error answer to call is printed whole, and exits 1.
func TestECRCallErrorAnswer(t *testing.T) {
	f := newECRTerminal(t)
	code, out, _ := runECR(t, "-url", f.srv.URL, "call", "/v2/nothing")
	if code != 1 || !strings.Contains(out, "HTTP 404") || !strings.Contains(out, `"errorText": "Invalid Url. Please, contact developers"`) {
		t.Errorf("exit %d\n%s", code, out)
	}
}

func TestECRTokens(t *testing.T) {
	f := newECRTerminal(t)
	f.on(ecrclient.PathDeviceInfo, ecrDevice)
	f.on(ecrclient.PathRegister, ecrRegistered)
	f.on(ecrclient.PathRevoke, ecrRevoked)
	dir := t.TempDir()
	last := func() ecrRequest { rs := f.requests(); return rs[len(rs)-1] }

	t.Setenv("POSAGENT_ECR_TOKEN", "from-env")
	if code, _, errs := runECR(t, "-url", f.srv.URL, "info"); code != 0 || last().token != "from-env" {
		t.Errorf("env token: exit %d (%s), header %q", code, errs, last().token)
	}
	if code, _, _ := runECR(t, "-url", f.srv.URL, "-token", "from-flag", "info"); code != 0 || last().token != "from-flag" {
		t.Errorf("-token: header %q", last().token)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runECR(t, "-url", f.srv.URL, "-token-file", plain, "info"); code != 0 || last().token != "from-file" {
		t.Errorf("-token-file plain: header %q", last().token)
	}

	// register: no header even with a token at hand; -save keeps the pair for its owner only.
	saved := filepath.Join(dir, "kassa1.json")
	code, out, errs := runECR(t, "-url", f.srv.URL, "register", "Kassa1", "-save", saved)
	if code != 0 {
		t.Fatalf("register: exit %d: %s", code, errs)
	}
	if r := last(); r.path != ecrclient.PathRegister || r.has || r.query.Get("name") != "Kassa1" {
		t.Errorf("register request %+v", r)
	}
	if !strings.Contains(out, "accessToken     99af370951a7b154a4ebd0c554d7eb24\n") || !strings.Contains(out, "expirationDate  Mar 7, 2023 15:02:56\n") {
		t.Errorf("register output:\n%s", out)
	}
	fi, err := os.Stat(saved)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	tf, err := readTokenFile(saved)
	if err != nil || tf.Name != "Kassa1" || tf.AccessToken != "99af370951a7b154a4ebd0c554d7eb24" || tf.RefreshToken != "d4a853dd320d179fde3271901c116bec" {
		t.Errorf("saved %+v, %v", tf, err)
	}

	// The saved file serves as -token-file.
	t.Setenv("POSAGENT_ECR_TOKEN", "")
	if code, _, _ := runECR(t, "-url", f.srv.URL, "-token-file", saved, "info"); code != 0 || last().token != "99af370951a7b154a4ebd0c554d7eb24" {
		t.Errorf("-token-file JSON: header %q", last().token)
	}

	// revoke -from: the file's refresh token and access token go out (not the environment's
	// token), the new pair comes back into the file.
	t.Setenv("POSAGENT_ECR_TOKEN", "stale-env")
	if code, _, errs := runECR(t, "-url", f.srv.URL, "revoke", "Kassa1", "-from", saved); code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, errs)
	}
	r := last()
	if r.path != ecrclient.PathRevoke || r.query.Get("refreshToken") != "d4a853dd320d179fde3271901c116bec" ||
		r.query.Get("name") != "Kassa1" || r.token != "99af370951a7b154a4ebd0c554d7eb24" {
		t.Errorf("revoke request %+v", r)
	}
	tf, err = readTokenFile(saved)
	if err != nil || tf.AccessToken != "665495959cd859bce7b887cff45e79ba" || tf.RefreshToken != "343755b21c9388eda4a0a221d560410c" || tf.ExpirationDate != "Mar 7, 2023 15:15:50" {
		t.Errorf("file after revoke %+v, %v", tf, err)
	}
	if fi, err := os.Stat(saved); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file after revoke: %v %v", fi.Mode(), err)
	}

	// revoke -refresh: the token from the flag.
	if code, out, _ := runECR(t, "-url", f.srv.URL, "-token", "old", "revoke", "Kassa1", "-refresh", "r1"); code != 0 ||
		last().query.Get("refreshToken") != "r1" || last().token != "old" || !strings.Contains(out, "665495959cd859bce7b887cff45e79ba") {
		t.Errorf("revoke -refresh: exit %d, request %+v", code, last())
	}
}

// A card number that arrives unmasked is masked on the screen.
func TestECRMasksCardNumber(t *testing.T) {
	f := newECRTerminal(t)
	f.on(ecrclient.PathStatus, strings.Replace(ecrCardResult, "440043*****6389", "4400430000006389", 1))
	_, out, _ := runECR(t, "-url", f.srv.URL, "status", "1678696290407")
	if strings.Contains(out, "4400430000006389") || !strings.Contains(out, "card=440043******6389") {
		t.Errorf("output:\n%s", out)
	}
}

func TestECRTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(ecrDevice))
	}))
	defer srv.Close()
	if code, out, errs := runECR(t, "-url", srv.URL, "-insecure", "info"); code != 0 || !strings.Contains(out, "31452963") {
		t.Errorf("-insecure: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runECR(t, "-url", srv.URL, "info"); code != 1 || !strings.Contains(errs, "-insecure") {
		t.Errorf("unverified: exit %d, stderr %q", code, errs)
	}
}

// Ctrl-C while following asks the terminal to cancel and follows on to the end; a second one
// stops following.
func TestECRInterrupt(t *testing.T) {
	interrupt := func() {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
			t.Error(err)
		}
	}
	t.Run("cancel", func(t *testing.T) {
		f := newECRTerminal(t)
		f.on(ecrclient.PathPayment, ecrStarted)
		f.on(ecrclient.PathCancel, `{"data":{},"statusCode":0}`)
		var mu sync.Mutex
		polls, cancelled := 0, false
		f.handle = func(r ecrRequest) (ecrReply, bool) {
			mu.Lock()
			defer mu.Unlock()
			switch r.path {
			case ecrclient.PathCancel:
				cancelled = true
			case ecrclient.PathStatus:
				polls++
				if cancelled {
					return ecrReply{200, strings.Replace(ecrUnknown, `"unknown"`, `"fail"`, 1)}, true
				}
				// Interrupts are caught from before the start: sending one now is safe.
				if polls == 2 {
					interrupt()
				}
				return ecrReply{200, waitState("WaitUser")}, true
			}
			return ecrReply{}, false
		}
		code, out, errs := runECR(t, "-url", f.srv.URL, "-poll", "1ms", "pay", "15")
		if code != 1 {
			t.Errorf("exit %d, want 1 (the payment was cancelled)", code)
		}
		r, ok := f.find(ecrclient.PathCancel)
		if !ok || r.query.Get("processId") != "1678696290407" {
			t.Errorf("cancel request %+v (sent: %v)", r, ok)
		}
		if !regexp.MustCompile(clock + ` fail      ProcessCancelled        message="Операция жойылды"\n`).MatchString(out) {
			t.Errorf("stdout:\n%s", out)
		}
		if !strings.Contains(errs, "asking the terminal to cancel process 1678696290407") {
			t.Errorf("stderr:\n%s", errs)
		}
	})
	t.Run("twice", func(t *testing.T) {
		f := newECRTerminal(t)
		f.on(ecrclient.PathPayment, ecrStarted)
		f.on(ecrclient.PathStatus, waitState("WaitUser"))
		var once sync.Once
		f.handle = func(r ecrRequest) (ecrReply, bool) {
			switch r.path {
			case ecrclient.PathStatus:
				once.Do(interrupt)
			case ecrclient.PathCancel:
				// The terminal takes the cancel but the process goes on; the person gives up.
				interrupt()
				return ecrReply{200, `{"data":{},"statusCode":0}`}, true
			}
			return ecrReply{}, false
		}
		code, _, errs := runECR(t, "-url", f.srv.URL, "-poll", "1ms", "pay", "15")
		if code != 1 || !strings.Contains(errs, "stopped following; process 1678696290407 goes on: posagent ecr follow 1678696290407") {
			t.Errorf("exit %d, stderr:\n%s", code, errs)
		}
	})
}
