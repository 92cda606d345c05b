package ecrclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// Protected mode: the token goes with every call but register, and the tokens register and
// revoke hand out replace it.
func TestTokenHeader(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.on(PathDeviceInfo, ok(specDeviceInfo))
	f.on(PathRegister, ok(specRegistered))
	f.on(PathRevoke, ok(specRevoked))
	f.on(PathPayment, ok(specPaymentStarted))
	f.on(PathStatus, ok(specCardSuccess))
	c := New(f.srv.URL, Options{Token: "initial"})

	if _, err := c.DeviceInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.token != "initial" {
		t.Errorf("deviceinfo carried token %q, want the initial one", r.token)
	}
	if _, err := c.Register(ctx, "K1"); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.has {
		t.Errorf("register carried an accessToken header (%q)", r.token)
	}
	if _, err := c.Payment(ctx, 5, false); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.token != "99af370951a7b154a4ebd0c554d7eb24" {
		t.Errorf("payment after register carried %q, want the registered token", r.token)
	}
	if _, err := c.Revoke(ctx, "K1", "d4a853dd320d179fde3271901c116bec"); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.token != "99af370951a7b154a4ebd0c554d7eb24" {
		t.Errorf("revoke carried %q, want the token it replaces", r.token)
	}
	if _, err := c.Status(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.token != "665495959cd859bce7b887cff45e79ba" {
		t.Errorf("status after revoke carried %q, want the revoked pair's token", r.token)
	}
	c.SetToken("")
	if _, err := c.DeviceInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if r := f.last(); r.has {
		t.Errorf("no token set, yet the header was sent (%q)", r.token)
	}
	// Dropping the kept-alive connections leaves the client usable.
	c.CloseIdleConnections()
	if _, err := c.DeviceInfo(ctx); err != nil {
		t.Errorf("after CloseIdleConnections: %v", err)
	}
}

// A failed register or revoke leaves the token in use alone.
func TestTokenKeptOnFailure(t *testing.T) {
	f := newFake(t)
	f.on(PathRevoke, ok(specRevokeWrong))
	c := New(f.srv.URL, Options{Token: "kept"})
	if _, err := c.Revoke(context.Background(), "K", "wrong"); !errors.Is(err, ErrService) {
		t.Fatalf("Revoke: %v", err)
	}
	if c.Token() != "kept" {
		t.Errorf("token %q after a failed revoke", c.Token())
	}
}

// The integrated-till operations send their paths and parameters.
func TestOperations(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	for _, p := range []string{PathVoid, PathSettlement, PathPreauth, PathPreauthComplete, PathBalance,
		PathCashWithdrawal, PathTopUp, PathReadCard, PathEmergencyCancel} {
		f.on(p, ok(`{"statusCode":0,"data":{"processId":"P`+p+`","status":"wait"}}`))
	}
	f.on(PathReport, ok(`{"statusCode":0,"data":{"count":3}}`))
	f.on(PathReceiptCopy, ok(`{"statusCode":0,"data":{"chequeInfo":{"rrn":"1"}}}`))
	f.on(PathEcho, ok(`{"statusCode":0,"data":{"host":"ok"}}`))
	f.on(PathCancel, ok(`{"statusCode":0,"data":{}}`))
	c := New(f.srv.URL, Options{})

	for _, tc := range []struct {
		start func() (string, error)
		path  string
		query url.Values
	}{
		{func() (string, error) { return c.Void(ctx, "T1", 0, false) }, PathVoid, url.Values{"transactionId": {"T1"}, "owncheque": {"false"}}},
		{func() (string, error) { return c.Void(ctx, "T1", 40, true) }, PathVoid, url.Values{"transactionId": {"T1"}, "amount": {"40"}, "owncheque": {"true"}}},
		{func() (string, error) { return c.Settlement(ctx, false) }, PathSettlement, url.Values{"owncheque": {"false"}}},
		{func() (string, error) { return c.Preauth(ctx, 500, true) }, PathPreauth, url.Values{"amount": {"500"}, "owncheque": {"true"}}},
		{func() (string, error) { return c.PreauthComplete(ctx, "T2", 450, false) }, PathPreauthComplete,
			url.Values{"transactionId": {"T2"}, "amount": {"450"}, "owncheque": {"false"}}},
		{func() (string, error) { return c.CashWithdrawal(ctx, 7, false) }, PathCashWithdrawal, url.Values{"amount": {"7"}, "owncheque": {"false"}}},
		{func() (string, error) { return c.TopUp(ctx, 8, true) }, PathTopUp, url.Values{"amount": {"8"}, "owncheque": {"true"}}},
		{func() (string, error) { return c.Balance(ctx) }, PathBalance, url.Values{}},
		{func() (string, error) { return c.ReadCard(ctx) }, PathReadCard, url.Values{}},
		{func() (string, error) { return c.EmergencyCancel(ctx, "P9", false) }, PathEmergencyCancel, url.Values{"processId": {"P9"}, "owncheque": {"false"}}},
		// Start takes a path with or without /v2/.
		{func() (string, error) { return c.Start(ctx, "balance", nil) }, PathBalance, url.Values{}},
		{func() (string, error) { return c.Start(ctx, "/v2/topup", url.Values{"amount": {"9"}}) }, PathTopUp, url.Values{"amount": {"9"}}},
	} {
		id, err := tc.start()
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if id != "P"+tc.path {
			t.Errorf("%s: processId %q", tc.path, id)
		}
		r := f.last()
		if r.path != tc.path || !reflect.DeepEqual(r.query, tc.query) {
			t.Errorf("sent %s %v, want %s %v", r.path, r.query, tc.path, tc.query)
		}
	}

	rep, err := c.Report(ctx, true)
	if err != nil || string(rep) != `{"count":3}` || f.last().query.Get("short") != "true" {
		t.Errorf("Report = %s, %v; query %v", rep, err, f.last().query)
	}
	if _, err := c.ReceiptCopy(ctx, ""); err != nil || len(f.last().query) != 0 {
		t.Errorf("ReceiptCopy of the last: %v; query %v", err, f.last().query)
	}
	if _, err := c.ReceiptCopy(ctx, "307208187011"); err != nil || f.last().query.Get("transactionId") != "307208187011" {
		t.Errorf("ReceiptCopy: %v; query %v", err, f.last().query)
	}
	if d, err := c.Echo(ctx); err != nil || string(d) != `{"host":"ok"}` {
		t.Errorf("Echo = %s, %v", d, err)
	}
	if err := c.Cancel(ctx, "P1"); err != nil || f.last().path != PathCancel || f.last().query.Get("processId") != "P1" {
		t.Errorf("Cancel: %v; request %+v", err, f.last())
	}
}

// The objects of the integrated-till operations stay available as raw JSON.
func TestStatusExtra(t *testing.T) {
	s, err := DecodeStatus([]byte(`{"processId":"1","status":"success","subStatus":"SettlementSuccess",
		"totals":{"sales":{"count":2,"amount":300}},"balance":{"available":"10 ₸"}}`))
	if err != nil {
		t.Fatal(err)
	}
	x := s.Extra()
	if len(x) != 2 {
		t.Fatalf("Extra = %v, want totals and balance", x)
	}
	var totals struct {
		Sales struct{ Count, Amount int }
	}
	if err := json.Unmarshal(x["totals"], &totals); err != nil || totals.Sales.Count != 2 || totals.Sales.Amount != 300 {
		t.Errorf("totals %s → %+v, %v", x["totals"], totals, err)
	}
	if string(x["balance"]) != `{"available":"10 ₸"}` {
		t.Errorf("balance %s", x["balance"])
	}
}

func TestBaseURL(t *testing.T) {
	f := newFake(t)
	f.on("/prefix/v2/echo", ok(`{"statusCode":0}`))
	f.on(PathEcho, ok(`{"statusCode":0}`))

	// Without a scheme, http; a path in the base prefixes every call.
	host := strings.TrimPrefix(f.srv.URL, "http://")
	if _, err := New(host, Options{}).Echo(context.Background()); err != nil {
		t.Errorf("base without scheme: %v", err)
	}
	if _, err := New(f.srv.URL+"/prefix/", Options{}).Echo(context.Background()); err != nil || f.last().path != "/prefix/v2/echo" {
		t.Errorf("base with a path: %v, sent %s", err, f.last().path)
	}
	for _, bad := range []string{"ftp://h", "http://", "http://h:bad port"} {
		if _, err := New(bad, Options{}).Echo(context.Background()); !errors.Is(err, ErrBaseURL) {
			t.Errorf("base %q: %v, want ErrBaseURL", bad, err)
		}
	}
}

// The accessToken header is not carried off by a redirect: the redirect is the answer.
func TestRedirectNotFollowed(t *testing.T) {
	var mu sync.Mutex
	elsewhere := 0
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		elsewhere++
		mu.Unlock()
	}))
	defer other.Close()
	redir := httptest.NewServer(http.RedirectHandler(other.URL+"/v2/deviceinfo", http.StatusFound))
	defer redir.Close()

	_, err := New(redir.URL, Options{Token: "secret-token"}).DeviceInfo(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.HTTP != http.StatusFound {
		t.Errorf("error %v, want an APIError with HTTP 302", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if elsewhere != 0 {
		t.Errorf("the redirect was followed %d times", elsewhere)
	}
}

// No answer is a TransportError, and its text does not repeat the query (a refresh token).
func TestTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	_, err := New(base, Options{}).Revoke(context.Background(), "K", "d4a853dd320d179fde3271901c116bec")
	var te *TransportError
	if !errors.As(err, &te) || te.Path != PathRevoke {
		t.Fatalf("error %v (%T), want a TransportError for %s", err, err, PathRevoke)
	}
	if strings.Contains(err.Error(), "d4a853dd") {
		t.Errorf("the error shows the refresh token: %v", err)
	}

	f := newFake(t)
	f.on(PathEcho, reply{dropConn, ""})
	if _, err := New(f.srv.URL, Options{}).Echo(context.Background()); !errors.As(err, &te) {
		t.Errorf("dropped connection: %v (%T), want a TransportError", err, err)
	}
}

// Each request is bounded by Options.Timeout; the caller's context is not needed for that.
func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	_, err := New(srv.URL, Options{Timeout: 50 * time.Millisecond}).Echo(context.Background())
	var te *TransportError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a TransportError for the deadline", err)
	}
}

// Protected mode is HTTPS with the terminal's own certificate: trusted through RootCAs, or
// not verified with Insecure, and refused otherwise.
func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(specDeviceInfo))
	}))
	defer srv.Close()
	ctx := context.Background()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	if _, err := New(srv.URL, Options{RootCAs: pool}).DeviceInfo(ctx); err != nil {
		t.Errorf("with RootCAs: %v", err)
	}
	if _, err := New(srv.URL, Options{Insecure: true}).DeviceInfo(ctx); err != nil {
		t.Errorf("with Insecure: %v", err)
	}
	_, err := New(srv.URL, Options{}).DeviceInfo(ctx)
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) {
		t.Errorf("unverified certificate: %v (%T), want a certificate verification error", err, err)
	}
	// A caller's own http.Client is used as it is.
	if _, err := New(srv.URL, Options{HTTP: srv.Client()}).DeviceInfo(ctx); err != nil {
		t.Errorf("with the server's client: %v", err)
	}
}
