package diag

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag/auth"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
)

// fullTerminal is fakeTerminal with a status of the size a real terminal gives: every part
// filled (four devices, three keys, two currencies, OTA components, the local parameters, a
// pending cash register), so the answer's bytes and its encoding cost are representative.
type fullTerminal struct{ fakeTerminal }

func (f *fullTerminal) Status(context.Context) Status {
	return Status{Time: t0,
		Identity: Identity{DeviceID: testDevice, Serial: testSerial, Model: "WPOS-3", Vendor: "Acme", Board: "sim",
			TerminalID: "T0001", MerchantID: "M000000000123", MerchantName: "Corner shop"},
		Agent: AgentStatus{Version: "1.8.0", Commit: "c987eaf01234", Target: "linux/arm64", Slot: "a", UptimeS: 3725},
		TMS: TMSStatus{Connected: true, Broker: "mqtts://tms.example:8883", ConnectedAt: t0.Add(-time.Hour),
			Connects: 3, Failures: 1, LastError: "dial tcp: i/o timeout"},
		Host: HostStatus{Configured: true, Address: "10.0.0.5:5000", State: "normal"},
		Hardware: []Device{{Name: "printer", Kind: "printer", State: "ok"}, {Name: "pinpad", Kind: "pinpad", State: "ok"},
			{Name: "reader", Kind: "cardreader", State: "ok"}, {Name: "drawer", Kind: "drawer", State: "gone", Detail: "no answer"}},
		Outbox: OutboxStatus{Records: 12, Bytes: 9800, Streams: map[string]int{"stats": 10, "log/audit": 2}},
		Config: ConfigStatus{Version: 42},
		Keys: []KeySlot{{Role: "pin", KCV: "A1B2C3", Alg: "tdes", LoadedAt: t0}, {Role: "mac", KCV: "D4E5F6", Alg: "tdes", LoadedAt: t0},
			{Role: "data", KCV: "0A1B2C", Alg: "aes", LoadedAt: t0}},
		License: LicenseStatus{State: "valid", ID: "lic-0001", Expires: t0.Add(365 * 24 * time.Hour),
			Features: []string{"payments", "ecr", "ota"}},
		Batch: BatchStatus{Number: 17, Count: 42, Totals: []BatchTotals{
			{Currency: "KZT", SalesCount: 40, SalesAmount: 12345600, RefundCount: 1, RefundAmount: 50000},
			{Currency: "USD", SalesCount: 1, SalesAmount: 2500}}},
		OTA: OTAStatus{Slot: "a", Components: map[string]string{"agent": "1.8.0", "emv-config": "2026.05", "fonts": "3"},
			Job: "job-1", Stage: "downloading", Progress: 42},
		Resources: Sample{Time: t0, CPUPercent: 3.5, RSSBytes: 12 << 20, HeapBytes: 4 << 20, Goroutines: 61,
			DiskFree: 80 << 20, DiskTotal: 128 << 20, OutboxRecs: 12},
		ECR: ECRStatus{Listen: "0.0.0.0:8090", Protected: true, Pending: []ECRRegistration{
			{ID: "reg-1", Name: "till 2", Remote: "192.0.2.20", Requested: t0}}},
		Params: []LocalParam{
			{Name: "receipt.copies", Value: "1", Choices: []string{"0", "1", "2"}, Description: "merchant copies printed"},
			{Name: "display.brightness", Value: "80", Description: "screen brightness, percent"},
			{Name: "language", Value: "ru", Choices: []string{"en", "kk", "ru"}, Description: "terminal language", Pending: true}},
		Services: []ServiceState{{Name: "ecr", State: "restarting", Restarts: 2, LastError: "listen: address in use"}},
	}
}

// benchServer is the real Server with a real auth.Store and audit.Log (with its outbox) on a
// temporary database, the full fake terminal, behind httptest on loopback, and a session
// signed in with a service token. It returns the server's URL and the session cookie.
func benchServer(b *testing.B) (srv *Server, url, cookie string) {
	b.Helper()
	db, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	commit := store.NewCommitter(db)
	b.Cleanup(func() {
		commit.Close()
		_ = db.Close()
	})
	ob, err := outbox.Open(db, commit, outbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	alog, err := audit.Open(audit.Options{DB: db, Commit: commit, Outbox: ob})
	if err != nil {
		b.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := tmsproto.NewSign1Keys(map[string]ed25519.PublicKey{kid: pub})
	if err != nil {
		b.Fatal(err)
	}
	// The clock stands still: the session never idles out however long the benchmark runs.
	as, err := auth.Open(auth.Options{DB: db, Commit: commit, Keys: keys, IDs: []string{testSerial, testDevice},
		Audit: alog, Now: func() time.Time { return t0 }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	srv = New(Options{Terminal: &fullTerminal{}, Auth: as, Audit: alog})
	ts := httptest.NewServer(srv.Handler())
	b.Cleanup(ts.Close)

	tok, err := auth.IssueToken(priv, kid, auth.Claims{ID: "tok-bench", Technician: "tech42", Role: auth.RoleService,
		Terminals: []string{testSerial}, IssuedAt: t0.Add(-time.Hour).Unix(), Expires: t0.Add(7 * time.Hour).Unix()})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := ts.Client().Post(ts.URL+"/api/login", "application/json", strings.NewReader(`{"token":"`+tok+`"}`))
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			cookie = c.Value
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == "" {
		b.Fatalf("login: %d, cookie %q", resp.StatusCode, cookie)
	}
	return srv, ts.URL, cookie
}

// statusRequest is the console's timed refresh of the status.
func statusRequest(b *testing.B, url, cookie string) *http.Request {
	b.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/api/status", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
	req.Header.Set(HeaderBackground, "1")
	return req
}

// get sends req on c and reads the answer whole; it returns the body's length.
func get(b *testing.B, c *http.Client, req *http.Request) int {
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v", req.URL.Path, resp.StatusCode, err)
	}
	return int(n)
}

// BenchmarkStatus is GET /api/status, the request the console repeats every second while a
// technician looks at it.
//
//	handler      the Server's handler called in the process (no network): cookie, session
//	             lookup, routing, security headers, the terminal's status encoded to JSON
//	loopback     the same through net/http over loopback, one keep-alive client
//	interleaved  one loopback call of the Server and one of a bare net/http handler writing
//	             the same status with json.Marshal, alternated on the same client, so both see
//	             the same load: diag-ns/op, bare-ns/op and their ratio
func BenchmarkStatus(b *testing.B) {
	srv, url, cookie := benchServer(b)
	b.Run("handler", func(b *testing.B) {
		req := statusRequest(b, url, cookie)
		var n int
		for b.Loop() {
			w := httptest.NewRecorder()
			srv.Handler().ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
			}
			n = w.Body.Len()
		}
		b.ReportMetric(float64(n), "body-B")
	})
	b.Run("loopback", func(b *testing.B) {
		c := &http.Client{}
		req := statusRequest(b, url, cookie)
		var n int
		for b.Loop() {
			n = get(b, c, req)
		}
		b.ReportMetric(float64(n), "body-B")
	})
	b.Run("interleaved", func(b *testing.B) {
		term := &fullTerminal{}
		bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := json.Marshal(term.Status(r.Context()))
			if err != nil {
				b.Error(err)
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(append(body, '\n'))
		}))
		defer bare.Close()
		c := &http.Client{}
		req := statusRequest(b, url, cookie)
		breq := statusRequest(b, bare.URL, cookie)
		get(b, c, breq) // both connections open before the timing
		var diagT, bareT time.Duration
		for b.Loop() {
			t := time.Now()
			get(b, c, req)
			diagT += time.Since(t)
			t = time.Now()
			get(b, c, breq)
			bareT += time.Since(t)
		}
		b.ReportMetric(float64(diagT.Nanoseconds())/float64(b.N), "diag-ns/op")
		b.ReportMetric(float64(bareT.Nanoseconds())/float64(b.N), "bare-ns/op")
		b.ReportMetric(float64(diagT)/float64(bareT), "diag/bare")
	})
}

// BenchmarkConsole is the console a phone loads once per visit: the page and its three
// files, as served (bytes on the wire before any compression, all four embedded in the
// binary as they are) and what gzip -9 would make of them. The time is the four requests
// through the handler.
func BenchmarkConsole(b *testing.B) {
	srv := New(Options{Terminal: &fakeTerminal{}, Auth: &auth.Store{}, Audit: nil})
	paths := []struct{ path, metric string }{
		{"/", "index-B"}, {"/static/app.js", "js-B"}, {"/static/app.css", "css-B"}, {"/static/icon.svg", "svg-B"},
	}
	sizes := make([]int, len(paths))
	var all bytes.Buffer
	for b.Loop() {
		all.Reset()
		for i, p := range paths {
			w := httptest.NewRecorder()
			srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, p.path, nil))
			if w.Code != http.StatusOK {
				b.Fatalf("GET %s: %d", p.path, w.Code)
			}
			sizes[i] = w.Body.Len()
			all.Write(w.Body.Bytes())
		}
	}
	total := 0
	for i, p := range paths {
		b.ReportMetric(float64(sizes[i]), p.metric)
		total += sizes[i]
	}
	b.ReportMetric(float64(total), "total-B")
	var z bytes.Buffer
	zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := zw.Write(all.Bytes()); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(z.Len()), "gzip-B")
}
