package tmslink

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/internal/testpki"
)

// countingConn counts the bytes that cross a connection in each direction.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// TestDialHookCarriesTheSession runs a link over Options.Dial, plain and with TLS on top of
// it: the session comes up, a record is delivered, and every byte crossed the hook's
// connection (a TLS session has more of them than a plain one for the same record).
func TestDialHookCarriesTheSession(t *testing.T) {
	ca := testpki.NewCA(t)
	br := testbroker.StartOpen(t, &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}, MinVersion: tls.VersionTLS12})
	var plainOut int64
	for _, tc := range []struct {
		name, url string
		tls       *tls.Config
	}{
		{"plain", br.URL, nil},
		{"tls", br.TLSURL, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in, out atomic.Int64
			var dials atomic.Int32
			dial := func(ctx context.Context, addr string) (net.Conn, error) {
				dials.Add(1)
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				if err != nil {
					return nil, err
				}
				return countingConn{Conn: c, in: &in, out: &out}, nil
			}
			db, err := store.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			commit := store.NewCommitter(db)
			box, err := outbox.Open(db, commit, outbox.Options{})
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(Options{DeviceID: "DIAL-" + tc.name, Broker: tc.url, TLS: tc.tls, Dial: dial,
				Backoff: backoff.Policy{Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond},
				DB:      db, Commit: commit, Outbox: box, Inbox: &recordingInbox{}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			defer func() {
				cancel()
				<-done
				commit.Close()
				db.Close()
			}()
			if _, err := box.Append(ctx, tmsproto.StreamEvent, "test", map[string]any{"n": 1}); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "record acknowledged", func() bool { return l.Status().Acked == 1 })
			if dials.Load() != 1 {
				t.Errorf("%d dials, want 1", dials.Load())
			}
			if in.Load() == 0 || out.Load() == 0 {
				t.Fatalf("bytes in %d out %d: the session did not use the hook's connection", in.Load(), out.Load())
			}
			if tc.tls == nil {
				plainOut = out.Load()
			} else if plainOut > 0 && out.Load() <= plainOut {
				t.Errorf("TLS sent %d bytes, plain %d: TLS was not on the hook's connection", out.Load(), plainOut)
			}
		})
	}
}

// TestDialHookRefusesOtherSchemes: a scheme the hook cannot carry fails the connection with
// a clear error instead of quietly bypassing the hook.
func TestDialHookRefusesOtherSchemes(t *testing.T) {
	l := &Link{opts: Options{Dial: func(context.Context, string) (net.Conn, error) {
		a, b := net.Pipe()
		b.Close()
		return a, nil
	}}}
	open := l.openConnection(context.Background())
	u := mustURL(t, "ws://127.0.0.1:1/mqtt")
	if _, err := open(u, *mqttOptions(time.Second)); err == nil {
		t.Fatal("ws:// through the dial hook was accepted")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mqttOptions(timeout time.Duration) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().SetConnectTimeout(timeout)
}

// TestDialerHasNoTCPKeepAlive: the link's own dialer leaves TCP keepalive off (a negative
// KeepAlive, in net.Dialer's terms); Go's default of 15 s would cost an idle terminal about
// 18 MB of mobile data a month.
func TestDialerHasNoTCPKeepAlive(t *testing.T) {
	d := dialer(3 * time.Second)
	if d.KeepAlive >= 0 {
		t.Fatalf("KeepAlive %v: TCP keepalive probes are on", d.KeepAlive)
	}
	if d.Timeout != 3*time.Second {
		t.Fatalf("Timeout %v", d.Timeout)
	}
}
