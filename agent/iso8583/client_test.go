package iso8583

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/testpki"
)

// host is a test acquirer host on loopback: each connection gets handle.
type host struct {
	ln       net.Listener
	requests atomic.Int32 // whole frames received, all connections together
	wg       sync.WaitGroup
}

func startHost(t *testing.T, ln net.Listener, handle func(h *host, c net.Conn)) *host {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	h := &host{ln: ln}
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Go(func() {
				defer c.Close()
				handle(h, c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); h.wg.Wait() })
	return h
}

// read reads the request frame and counts it.
func (h *host) read(c net.Conn) (*Msg, Header, bool) {
	f, err := ReadFrame(c)
	if err != nil {
		return nil, Header{}, false
	}
	h.requests.Add(1)
	hd, m, _, err := Unpack(f)
	return m, hd, err == nil
}

func answering(h *host, c net.Conn) {
	m, hd, ok := h.read(c)
	if !ok {
		return
	}
	a := Msg{MTI: "0210", STAN: m.STAN, RespCode: "00", TID: m.TID, MID: m.MID}
	f, _ := Pack(hd.Reply(), &a, macECB)
	_, _ = c.Write(f)
}

func (h *host) addr() string { return h.ln.Addr().String() }

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func request(t *testing.T) []byte {
	m := purchase()
	return mustPack(t, testHeader(t, false), &m, macECB)
}

func newTestClient(o ClientOptions) *Client {
	c := NewClient(o)
	c.pause = 10 * time.Millisecond
	return c
}

func TestExchangeAnswer(t *testing.T) {
	h := startHost(t, nil, answering)
	c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, Timeout: 5 * time.Second})
	ans, err := c.Exchange(t.Context(), request(t))
	if err != nil {
		t.Fatal(err)
	}
	hd, m, mab, err := Unpack(ans)
	if err != nil || m.MTI != "0210" || m.STAN != 1834 || m.RespCode != "00" {
		t.Fatalf("%+v %v", m, err)
	}
	if err := VerifyMAC(m, mab, macECB); err != nil {
		t.Fatal(err)
	}
	if hd.TPDU != [5]byte{0x60, 0, 0, 0, 3} {
		t.Fatalf("answer TPDU %X", hd.TPDU)
	}
	if n := h.requests.Load(); n != 1 {
		t.Fatalf("%d requests", n)
	}
}

func TestExchangeSilence(t *testing.T) {
	h := startHost(t, nil, func(h *host, c net.Conn) {
		h.read(c)
		time.Sleep(time.Second)
	})
	c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Exchange(t.Context(), request(t))
	if !errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrLink) || errors.Is(err, ErrConnect) {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 900*time.Millisecond {
		t.Fatalf("after %v", d)
	}
	if n := h.requests.Load(); n != 1 {
		t.Fatalf("%d requests", n)
	}
}

func TestExchangeContextEnds(t *testing.T) {
	h := startHost(t, nil, func(h *host, c net.Conn) {
		h.read(c)
		time.Sleep(time.Second)
	})
	c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exchange(ctx, request(t))
	if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("after %v", d)
	}
	// A context already ended: nothing is sent.
	done, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if _, err := c.Exchange(done, request(t)); !errors.Is(err, ErrConnect) {
		t.Fatal(err)
	}
}

func TestExchangeClosedAfterReading(t *testing.T) {
	h := startHost(t, nil, func(h *host, c net.Conn) { h.read(c) })
	c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, Timeout: 5 * time.Second})
	_, err := c.Exchange(t.Context(), request(t))
	if !errors.Is(err, ErrLink) || errors.Is(err, ErrNoAnswer) {
		t.Fatal(err)
	}
	if n := h.requests.Load(); n != 1 {
		t.Fatalf("%d requests: sent again", n)
	}
}

func TestExchangeAnswerCut(t *testing.T) {
	for name, reply := range map[string][]byte{
		"half":     request(t)[:20],
		"length":   {0x00},
		"too long": {0x20, 0x00, 0x60},
	} {
		t.Run(name, func(t *testing.T) {
			h := startHost(t, nil, func(h *host, c net.Conn) {
				h.read(c)
				_, _ = c.Write(reply)
			})
			c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, Timeout: 2 * time.Second})
			start := time.Now()
			_, err := c.Exchange(t.Context(), request(t))
			if !errors.Is(err, ErrLink) {
				t.Fatal(err)
			}
			if name == "too long" && !errors.Is(err, ErrTooLong) {
				t.Fatal(err)
			}
			if time.Since(start) > time.Second {
				t.Fatal("waited for the timeout")
			}
		})
	}
}

func TestExchangeBackupAddress(t *testing.T) {
	h := startHost(t, nil, answering)
	var dials []string
	var mu sync.Mutex
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials = append(dials, addr)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	dead := deadAddr(t)
	c := newTestClient(ClientOptions{Addrs: []string{dead, h.addr()}, Dialer: dialer})
	if _, err := c.Exchange(t.Context(), request(t)); err != nil {
		t.Fatal(err)
	}
	if len(dials) != 2 || dials[0] != dead || dials[1] != h.addr() {
		t.Fatalf("dials %v", dials)
	}
	if n := h.requests.Load(); n != 1 {
		t.Fatalf("%d requests", n)
	}
}

func TestExchangeNothingListening(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	var dials []string
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials = append(dials, addr)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c := newTestClient(ClientOptions{Addrs: []string{a, b}, Dialer: dialer})
	_, err := c.Exchange(t.Context(), request(t))
	if !errors.Is(err, ErrConnect) {
		t.Fatal(err)
	}
	if want := []string{a, b, a, b}; len(dials) != 4 || dials[0] != a || dials[1] != b || dials[2] != a || dials[3] != b {
		t.Fatalf("dials %v, want %v", dials, want)
	}
	if _, err := newTestClient(ClientOptions{}).Exchange(t.Context(), request(t)); !errors.Is(err, ErrConnect) {
		t.Fatal(err)
	}
}

func TestExchangeConnectTimeout(t *testing.T) {
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c := newTestClient(ClientOptions{Addrs: []string{"192.0.2.1:5000"}, Dialer: dialer, ConnectTimeout: 50 * time.Millisecond})
	start := time.Now()
	if _, err := c.Exchange(t.Context(), request(t)); !errors.Is(err, ErrConnect) {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
		t.Fatalf("two attempts took %v", d)
	}
}

func TestExchangeRefusesBadFrame(t *testing.T) {
	c := newTestClient(ClientOptions{Addrs: []string{"127.0.0.1:1"}, Dialer: func(context.Context, string, string) (net.Conn, error) {
		t.Fatal("dialled")
		return nil, nil
	}})
	for _, f := range [][]byte{nil, {0}, {0, 5, 1}, {0, 0}} {
		if _, err := c.Exchange(t.Context(), f); !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
	}
}

func TestExchangeTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	cert := ca.Server(t, "acquirer")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	h := startHost(t, ln, answering)

	c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, TLS: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}})
	ans, err := c.Exchange(t.Context(), request(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, m, _, err := Unpack(ans); err != nil || m.MTI != "0210" {
		t.Fatal(err)
	}

	// A host whose certificate our CA did not issue: no connection, nothing sent.
	other := testpki.NewCA(t)
	bad := newTestClient(ClientOptions{Addrs: []string{h.addr()}, TLS: &tls.Config{RootCAs: other.Pool()}})
	before := h.requests.Load()
	if _, err := bad.Exchange(t.Context(), request(t)); !errors.Is(err, ErrConnect) {
		t.Fatal(err)
	}
	if h.requests.Load() != before {
		t.Fatal("request sent over an unverified link")
	}
}

func TestExchangeSecretsNotLogged(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	h := startHost(t, nil, func(h *host, c net.Conn) { h.read(c) })
	c := newTestClient(ClientOptions{Addrs: []string{h.addr()}, Logger: newBufLogger(&buf, &mu)})
	_, _ = c.Exchange(t.Context(), request(t))
	mu.Lock()
	defer mu.Unlock()
	if bytes.Contains(buf.Bytes(), []byte("6225881234")) || buf.Len() == 0 {
		t.Fatalf("log %q", buf.String())
	}
}
