package qrpay_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/qrpay"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/internal/hostsim"
)

// The client against the demo's QR provider itself: internal/hostsim's QR handler, served
// over HTTP on loopback, its simulated customer on short timers.

const tid = "10000001"

// wait bounds every wait on the provider's timers: generous, only a broken test waits it out.
const wait = 15 * time.Second

// failingRand is the provider's randomness, made to fail on demand: the provider then
// answers a refund 500.
type failingRand struct{ fail atomic.Bool }

func (r *failingRand) Read(p []byte) (int, error) {
	if r.fail.Load() {
		return 0, errors.New("entropy gone")
	}
	return rand.Read(p)
}

// provider is a hostsim QR host on an HTTP server.
type provider struct {
	sim  *hostsim.Server
	srv  *httptest.Server
	rand *failingRand
}

// startProvider starts the provider; qr sets its customer's timers, now its clock.
func startProvider(t *testing.T, qr hostsim.QRConfig, now func() time.Time) *provider {
	t.Helper()
	p := &provider{rand: &failingRand{}}
	sim, err := hostsim.New(hostsim.Config{
		Terminals: []hostsim.Terminal{{TID: tid, MID: "898100012340001", KEK: "0123456789ABCDEFFEDCBA9876543210"}},
		Accounts:  hostsim.DefaultAccounts(), QR: qr, Now: now, Rand: p.rand,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	p.sim = sim
	p.srv = httptest.NewServer(sim.QRHandler())
	t.Cleanup(p.srv.Close)
	return p
}

// client is a client of the provider at url.
func client(t *testing.T, url string, o qrpay.Options) *qrpay.Client {
	t.Helper()
	if o.TID == "" {
		o.TID = tid
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := qrpay.New(termconfig.QRHost{Name: "sim", URL: url, MerchantID: "898100012340001", PollIntervalSec: 1}, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// hourAgo is a provider clock an hour behind: its timers count from an hour ago, so one due
// half an hour after an order fires at once while one due two hours after it is an hour away
// — a scan now and a payment much later, without racing a short timer.
func hourAgo() time.Time { return time.Now().Add(-time.Hour) }

// changes records what Wait's onChange saw.
type changes struct {
	mu   sync.Mutex
	seen []qrpay.Status
}

func (c *changes) add(o qrpay.Order) {
	c.mu.Lock()
	c.seen = append(c.seen, o.Status)
	c.mu.Unlock()
}

func (c *changes) get() []qrpay.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

// An order is made, the customer scans and pays it: Wait follows it to paid and reports
// each status once, in order; the payment reaches the provider's ledger.
func TestCreateAndWaitPaid(t *testing.T) {
	p := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(100 * time.Millisecond)}, nil)
	c := client(t, p.srv.URL, qrpay.Options{})
	ctx := ctxFor(t)

	o, err := c.Create(ctx, 2500, "156")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID == "" || o.Status != qrpay.StatusPending || o.Final() || o.Amount != 2500 || o.Currency != "156" ||
		!strings.Contains(o.QR, o.ID) || !o.ExpiresAt.After(time.Now()) {
		t.Fatalf("created %+v", o)
	}
	var ch changes
	got, err := c.Wait(ctx, o.ID, 5*time.Millisecond, ch.add)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != qrpay.StatusPaid || !got.Final() || got.RRN == "" || got.ID != o.ID || got.Amount != 2500 {
		t.Errorf("waited for %+v", got)
	}
	// Whatever the polls caught, it is the provider's order of statuses, each once.
	seen := ch.get()
	order := []qrpay.Status{qrpay.StatusPending, qrpay.StatusScanned, qrpay.StatusPaid}
	if len(seen) == 0 || seen[len(seen)-1] != qrpay.StatusPaid || !subsequence(seen, order) {
		t.Errorf("changes %v", seen)
	}
	if n := p.sim.Charged(tid); n != 2500 {
		t.Errorf("the provider charged %d", n)
	}
	again, err := c.Get(ctx, o.ID)
	if err != nil || again != got {
		t.Errorf("get after the payment: %+v %v", again, err)
	}
}

// subsequence: every element of got appears in want, in want's order, no repeats.
func subsequence[T comparable](got, want []T) bool {
	i := 0
	for _, g := range got {
		for i < len(want) && want[i] != g {
			i++
		}
		if i == len(want) {
			return false
		}
		i++
	}
	return true
}

// A scanned order is still open: the terminal cancels it, Wait reports the cancellation.
// Cancelling it again, or cancelling a paid order, is ErrFinal with the order as it is.
func TestScannedAndCancel(t *testing.T) {
	p := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(2 * time.Hour), Expiry: hostsim.Duration(3 * time.Hour)}, hourAgo)
	c := client(t, p.srv.URL, qrpay.Options{})
	ctx := ctxFor(t)
	o, err := c.Create(ctx, 900, "")
	if err != nil {
		t.Fatal(err)
	}
	var ch changes
	cancelled := make(chan error, 1)
	got, err := c.Wait(ctx, o.ID, 5*time.Millisecond, func(o qrpay.Order) {
		ch.add(o)
		if o.Status == qrpay.StatusScanned {
			co, err := c.Cancel(ctx, o.ID)
			if err == nil && co.Status != qrpay.StatusCancelled {
				err = errors.New("cancel answered " + string(co.Status))
			}
			cancelled <- err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-cancelled; err != nil {
		t.Fatalf("cancel of the scanned order: %v", err)
	}
	if got.Status != qrpay.StatusCancelled {
		t.Errorf("waited for %+v", got)
	}
	if seen := ch.get(); !slices.Contains(seen, qrpay.StatusScanned) || seen[len(seen)-1] != qrpay.StatusCancelled ||
		!subsequence(seen, []qrpay.Status{qrpay.StatusPending, qrpay.StatusScanned, qrpay.StatusCancelled}) {
		t.Errorf("changes %v", seen)
	}
	again, err := c.Cancel(ctx, o.ID)
	if !errors.Is(err, qrpay.ErrFinal) || again.Status != qrpay.StatusCancelled || again.ID != o.ID {
		t.Errorf("second cancel: %+v %v", again, err)
	}
	if n := p.sim.Charged(tid); n != 0 {
		t.Errorf("the provider charged %d", n)
	}

	// Paid meanwhile: the cancel says so and brings the payment's reference.
	paid := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(time.Millisecond)}, nil)
	pc := client(t, paid.srv.URL, qrpay.Options{})
	po, err := pc.Create(ctx, 1500, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Wait(ctx, po.ID, 5*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	got, err = pc.Cancel(ctx, po.ID)
	if !errors.Is(err, qrpay.ErrFinal) || got.Status != qrpay.StatusPaid || got.RRN == "" {
		t.Errorf("cancel of a paid order: %+v %v", got, err)
	}
}

// The customer cancels (an amount ending in .13), or never pays and the order expires.
func TestCustomerCancelsOrExpires(t *testing.T) {
	p := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(20 * time.Millisecond)}, nil)
	c := client(t, p.srv.URL, qrpay.Options{})
	ctx := ctxFor(t)
	o, err := c.Create(ctx, 1213, "156")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Wait(ctx, o.ID, 5*time.Millisecond, nil); err != nil || got.Status != qrpay.StatusCancelled || !got.Final() {
		t.Errorf("customer's cancel: %+v %v", got, err)
	}

	never := startProvider(t, hostsim.QRConfig{PayDelay: -1, Expiry: hostsim.Duration(50 * time.Millisecond)}, nil)
	nc := client(t, never.srv.URL, qrpay.Options{})
	o, err = nc.Create(ctx, 800, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := nc.Wait(ctx, o.ID, 5*time.Millisecond, nil); err != nil || got.Status != qrpay.StatusExpired || !got.Final() {
		t.Errorf("never paid: %+v %v", got, err)
	}
	if n := p.sim.Charged(tid) + never.sim.Charged(tid); n != 0 {
		t.Errorf("the providers charged %d", n)
	}
}

// Refunds of a paid order, partial then the rest; one too many is refused with the order as
// it stands, as is the refund of an order not paid.
func TestRefund(t *testing.T) {
	p := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(time.Millisecond)}, nil)
	c := client(t, p.srv.URL, qrpay.Options{})
	ctx := ctxFor(t)
	o, err := c.Create(ctx, 2500, "156")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, o.ID, 5*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	r1, err := c.Refund(ctx, o.ID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID == "" || r1.Amount != 1000 || r1.Order.ID != o.ID || r1.Order.Refunded != 1000 || r1.Order.Status != qrpay.StatusPaid {
		t.Errorf("refund %+v", r1)
	}
	if n := p.sim.Charged(tid); n != 1500 {
		t.Errorf("charged after the refund: %d", n)
	}
	r, err := c.Refund(ctx, o.ID, 1600)
	if !errors.Is(err, qrpay.ErrRefundRefused) || r.Order.Refunded != 1000 || r.Order.ID != o.ID || r.ID != "" {
		t.Errorf("refund above what is left: %+v %v", r, err)
	}
	r2, err := c.Refund(ctx, o.ID, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID == "" || r2.ID == r1.ID || r2.Order.Refunded != 2500 {
		t.Errorf("second refund %+v", r2)
	}
	if got, err := c.Get(ctx, o.ID); err != nil || got.Refunded != 2500 {
		t.Errorf("order after the refunds: %+v %v", got, err)
	}
	if n := p.sim.Charged(tid); n != 0 {
		t.Errorf("charged after the refunds: %d", n)
	}

	// Not paid (yet): refused.
	open := startProvider(t, hostsim.QRConfig{PayDelay: -1}, nil)
	oc := client(t, open.srv.URL, qrpay.Options{})
	po, err := oc.Create(ctx, 700, "")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := oc.Refund(ctx, po.ID, 100); !errors.Is(err, qrpay.ErrRefundRefused) || r.Order.Status != qrpay.StatusPending {
		t.Errorf("refund of a pending order: %+v %v", r, err)
	}
	if _, err := oc.Refund(ctx, po.ID, 0); !errors.Is(err, qrpay.ErrInvalid) {
		t.Errorf("refund of nothing: %v", err)
	}
}

// The provider's definite refusals and its failures come apart: 404 ErrNotFound, other 4xx
// a ProviderError with its status and text, 5xx and a dead line ErrUnreachable.
func TestErrors(t *testing.T) {
	p := startProvider(t, hostsim.QRConfig{PayDelay: -1}, nil)
	c := client(t, p.srv.URL, qrpay.Options{})
	ctx := ctxFor(t)

	if _, err := c.Get(ctx, "QR-NOPE"); !errors.Is(err, qrpay.ErrNotFound) {
		t.Errorf("get of an unknown order: %v", err)
	}
	if _, err := c.Cancel(ctx, "QR-NOPE"); !errors.Is(err, qrpay.ErrNotFound) {
		t.Errorf("cancel of an unknown order: %v", err)
	}
	if _, err := c.Refund(ctx, "QR-NOPE", 100); !errors.Is(err, qrpay.ErrNotFound) {
		t.Errorf("refund of an unknown order: %v", err)
	}
	if _, err := c.Wait(ctx, "QR-NOPE", time.Millisecond, nil); !errors.Is(err, qrpay.ErrNotFound) {
		t.Errorf("wait for an unknown order: %v", err)
	}
	// An id that would leave the order's path stays in it.
	if _, err := c.Get(ctx, "../../qr/orders"); !errors.Is(err, qrpay.ErrNotFound) {
		t.Errorf("get of a path-like id: %v", err)
	}

	stranger := client(t, p.srv.URL, qrpay.Options{TID: "99999999"})
	_, err := stranger.Create(ctx, 100, "")
	var pe *qrpay.ProviderError
	if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || !strings.Contains(pe.Message, "99999999") {
		t.Errorf("order of an unknown terminal: %v", err)
	}
	if errors.Is(err, qrpay.ErrUnreachable) {
		t.Errorf("a refusal counted as unreachable: %v", err)
	}
	if _, err := c.Create(ctx, 0, ""); !errors.Is(err, qrpay.ErrInvalid) {
		t.Errorf("order of nothing: %v", err)
	}

	// The provider fails inside (500): the outcome is unknown.
	paid := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(time.Millisecond)}, nil)
	pc := client(t, paid.srv.URL, qrpay.Options{})
	o, err := pc.Create(ctx, 500, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Wait(ctx, o.ID, 5*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	paid.rand.fail.Store(true)
	if _, err := pc.Refund(ctx, o.ID, 100); !errors.Is(err, qrpay.ErrUnreachable) || errors.As(err, &pe) {
		t.Errorf("refund the provider failed: %v", err)
	}

	// Nobody listens any more.
	p.srv.Close()
	if _, err := c.Get(ctx, o.ID); !errors.Is(err, qrpay.ErrUnreachable) {
		t.Errorf("get from a closed provider: %v", err)
	}
	if _, err := c.Create(ctx, 100, ""); !errors.Is(err, qrpay.ErrUnreachable) {
		t.Errorf("order at a closed provider: %v", err)
	}
}

// Wait polls through a provider it cannot reach and finishes once it can; the end of ctx
// ends it with the last order read.
func TestWaitRidesOutOutageAndStopsOnCtx(t *testing.T) {
	p := startProvider(t, hostsim.QRConfig{PayDelay: hostsim.Duration(time.Millisecond)}, nil)
	o, err := p.sim.NewQROrder(tid, 3000, "156")
	if err != nil {
		t.Fatal(err)
	}
	// An address nobody listens on yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	logs := &warnings{}
	c := client(t, "http://"+addr, qrpay.Options{Logger: slog.New(logs)})
	ctx := ctxFor(t)
	type result struct {
		o   qrpay.Order
		err error
	}
	done := make(chan result, 1)
	go func() {
		got, err := c.Wait(ctx, o.ID, 5*time.Millisecond, nil)
		done <- result{got, err}
	}()
	for logs.count() < 2 {
		select {
		case r := <-done:
			t.Fatalf("wait ended while the provider was away: %+v %v", r.o, r.err)
		case <-ctx.Done():
			t.Fatal("no failed poll")
		case <-time.After(time.Millisecond):
		}
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p.sim.QRHandler(), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	r := <-done
	if r.err != nil || r.o.Status != qrpay.StatusPaid || r.o.ID != o.ID {
		t.Fatalf("wait after the outage: %+v %v", r.o, r.err)
	}

	// Never paid: the caller gives up.
	never := startProvider(t, hostsim.QRConfig{PayDelay: -1}, nil)
	nc := client(t, never.srv.URL, qrpay.Options{})
	no, err := nc.Create(ctx, 400, "")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got, err := nc.Wait(wctx, no.ID, 5*time.Millisecond, func(qrpay.Order) { cancel() })
	if !errors.Is(err, context.Canceled) || got.ID != no.ID || got.Status != qrpay.StatusPending {
		t.Errorf("wait given up: %+v %v", got, err)
	}
}

// warnings counts the failed polls Wait logs, at any level.
type warnings struct{ n atomic.Int64 }

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "poll failed") {
		w.n.Add(1)
	}
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
func (w *warnings) count() int64                       { return w.n.Load() }

// Over https the provider is checked against the roots given — the pool the caller resolved
// the configuration's certificate reference into, or a PEM certificate in the configuration —
// and a provider the roots do not vouch for is not talked to.
func TestTLS(t *testing.T) {
	sim, err := hostsim.New(hostsim.Config{
		Terminals: []hostsim.Terminal{{TID: tid, MID: "898100012340001", KEK: "0123456789ABCDEFFEDCBA9876543210"}},
		QR:        hostsim.QRConfig{PayDelay: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	srv := httptest.NewTLSServer(sim.QRHandler())
	t.Cleanup(srv.Close)
	ctx := ctxFor(t)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	pemCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	quiet := slog.New(slog.DiscardHandler)

	for name, tc := range map[string]struct {
		host termconfig.QRHost
		o    qrpay.Options
	}{
		"RootCAs":                  {termconfig.QRHost{URL: srv.URL, CACertificate: "qr-ca"}, qrpay.Options{RootCAs: pool}},
		"PEM in the configuration": {termconfig.QRHost{URL: srv.URL, CACertificate: pemCA}, qrpay.Options{}},
	} {
		t.Run(name, func(t *testing.T) {
			tc.o.TID, tc.o.Logger = tid, quiet
			c, err := qrpay.New(tc.host, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.Create(ctx, 100, "")
			if err != nil || o.Status != qrpay.StatusPending {
				t.Fatalf("create over https: %+v %v", o, err)
			}
		})
	}

	// The system roots do not know the test server.
	c, err := qrpay.New(termconfig.QRHost{URL: srv.URL}, qrpay.Options{TID: tid, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var uae x509.UnknownAuthorityError
	if _, err := c.Create(ctx, 100, ""); !errors.Is(err, qrpay.ErrUnreachable) || !errors.As(err, &uae) {
		t.Errorf("provider with an unknown certificate: %v", err)
	}
	// A certificate reference nobody resolved is not silently replaced by the system roots.
	if _, err := qrpay.New(termconfig.QRHost{URL: srv.URL, CACertificate: "qr-ca"}, qrpay.Options{TID: tid}); !errors.Is(err, qrpay.ErrConfig) {
		t.Errorf("unresolved caCertificate: %v", err)
	}
	for _, bad := range []termconfig.QRHost{{URL: "ftp://example.com"}, {URL: "https://user:pw@example.com"}, {URL: "http://"},
		{URL: "https://example.com/?x=1"}, {URL: srv.URL, CACertificate: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}} {
		if _, err := qrpay.New(bad, qrpay.Options{TID: tid}); !errors.Is(err, qrpay.ErrConfig) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if _, err := qrpay.New(termconfig.QRHost{URL: srv.URL}, qrpay.Options{}); !errors.Is(err, qrpay.ErrConfig) {
		t.Errorf("no terminal id: %v", err)
	}
}

// Answers that are not orders are refused, whatever their status code; an answer that does
// not end is not read past the bound. (A provider of garbage: the one fake of these tests.)
func TestGarbageAnswers(t *testing.T) {
	big := `{"orderId":"QR1","status":"pending","amount":100,"qr":"x","pad":"` + strings.Repeat("a", qrpay.MaxResponse) + `"}`
	for _, tc := range []struct {
		name, body string
		code       int
		want       error
	}{
		{"html", "<html>hello</html>", 201, qrpay.ErrBadResponse},
		{"no orderId", `{"status":"pending","amount":100,"qr":"x"}`, 201, qrpay.ErrBadResponse},
		{"no status", `{"orderId":"QR1","amount":100,"qr":"x"}`, 201, qrpay.ErrBadResponse},
		{"unknown status", `{"orderId":"QR1","status":"maybe","amount":100,"qr":"x"}`, 201, qrpay.ErrBadResponse},
		{"other amount", `{"orderId":"QR1","status":"pending","amount":101,"qr":"x"}`, 201, qrpay.ErrBadResponse},
		{"no qr", `{"orderId":"QR1","status":"pending","amount":100}`, 201, qrpay.ErrBadResponse},
		{"too big", big, 201, qrpay.ErrBadResponse},
		{"redirect", "", 302, qrpay.ErrBadResponse},
		{"teapot", `{"error":"no\u0007 tea"}`, 418, &qrpay.ProviderError{Status: 418, Message: "no tea"}},
		{"unavailable", "busy", 503, qrpay.ErrUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if tc.code == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.code)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := client(t, srv.URL, qrpay.Options{HTTP: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}}})
			_, err := c.Create(ctxFor(t), 100, "")
			var pe *qrpay.ProviderError
			switch want := tc.want.(type) {
			case *qrpay.ProviderError:
				if !errors.As(err, &pe) || *pe != *want {
					t.Errorf("%v, want %v", err, want)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("%v, want %v", err, want)
				}
			}
		})
	}
}
