package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/testpki"
)

// server is a loopback listener whose accepted connections the test takes one by one.
type server struct {
	ln    net.Listener
	conns chan net.Conn
}

func newServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, conns: make(chan net.Conn, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(s.conns)
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) accept(t *testing.T) net.Conn {
	t.Helper()
	c, ok := <-s.conns
	if !ok {
		t.Fatal("listener closed")
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, d *Dialer, addr string, m *Meter, l *Link) net.Conn {
	t.Helper()
	c, err := d.Dial(context.Background(), addr, m, l)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFull(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func isReset(err error) bool {
	return errors.Is(err, ErrPartitioned) && errors.Is(err, syscall.ECONNRESET)
}

func TestCountsWhatCrossed(t *testing.T) {
	srv := newServer(t)
	var d Dialer
	var m Meter
	var l Link

	up := bytes.Repeat([]byte("u"), 3000)
	down := bytes.Repeat([]byte("d"), 70000) // several segments and reads
	for i := range 2 {                       // a reconnect adds to the same meter
		c := dial(t, &d, srv.addr(), &m, &l)
		s := srv.accept(t)
		if _, err := c.Write(up); err != nil {
			t.Fatal(err)
		}
		if got := readFull(t, s, len(up)); !bytes.Equal(got, up) {
			t.Fatal("server got different bytes")
		}
		if _, err := s.Write(down); err != nil {
			t.Fatal(err)
		}
		if got := readFull(t, c, len(down)); !bytes.Equal(got, down) {
			t.Fatal("client got different bytes")
		}

		live := m.Traffic()
		want := int64(i + 1)
		if live.Conns != want || live.BytesOut != want*int64(len(up)) || live.BytesIn != want*int64(len(down)) {
			t.Fatalf("live traffic %+v after %d connections", live, want)
		}
		if SegmentsCounted() == nil && (live.SegsIn == 0 || live.SegsOut == 0) {
			t.Fatalf("no segments from TCP_INFO on a live connection: %+v", live)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		closed := m.Traffic()
		if closed.BytesIn != live.BytesIn || closed.BytesOut != live.BytesOut {
			t.Fatalf("bytes changed at close: %+v -> %+v", live, closed)
		}
		// The live connection's segments move into the closed total, none lost.
		if closed.SegsIn < live.SegsIn || closed.SegsOut < live.SegsOut {
			t.Fatalf("segments went down at close: %+v -> %+v", live, closed)
		}
		if q := m.Counted(); q != closed {
			t.Fatalf("Counted %+v != Traffic %+v with no live connection", q, closed)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close: %v", err)
		}
	}
	tr := m.Traffic()
	if got, want := tr.IPBytes(), tr.BytesIn+tr.BytesOut+HeaderBytes*(tr.SegsIn+tr.SegsOut); got != want {
		t.Fatalf("IPBytes %d, want %d", got, want)
	}
}

func TestTrafficAdd(t *testing.T) {
	a := Traffic{BytesIn: 1, BytesOut: 2, SegsIn: 3, SegsOut: 4, Conns: 5}
	b := Traffic{BytesIn: 10, BytesOut: 20, SegsIn: 30, SegsOut: 40, Conns: 50}
	if got := a.Add(b); got != (Traffic{11, 22, 33, 44, 55}) {
		t.Fatalf("Add: %+v", got)
	}
	if got := b.IPBytes(); got != 10+20+(30+40)*52 {
		t.Fatalf("IPBytes: %d", got)
	}
}

// TLS is layered above the wrapper by the link, so the meter sees the records.
func TestCountsTLSRecords(t *testing.T) {
	ca := testpki.NewCA(t)
	srv := newServer(t)
	var d Dialer
	var m Meter
	raw := dial(t, &d, srv.addr(), &m, nil)
	sraw := &countingConn{Conn: srv.accept(t)}

	serverDone := make(chan error, 1)
	go func() {
		s := tls.Server(sraw, &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}})
		buf := make([]byte, 5)
		if _, err := io.ReadFull(s, buf); err != nil {
			serverDone <- err
			return
		}
		_, err := s.Write(buf)
		serverDone <- err
	}()
	c := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, c, 5); string(got) != "hello" {
		t.Fatalf("echo %q", got)
	}
	if err := <-serverDone; err != nil {
		t.Fatal(err)
	}
	tr := m.Traffic()
	if tr.BytesOut != sraw.in.Load() || tr.BytesIn != sraw.out.Load() {
		t.Fatalf("meter %+v, server socket saw in=%d out=%d", tr, sraw.in.Load(), sraw.out.Load())
	}
	if tr.BytesOut <= 5 || tr.BytesIn <= 5 {
		t.Fatalf("TLS handshake and records not counted: %+v", tr)
	}
}

type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

func TestBlackholeSwallowsWrites(t *testing.T) {
	srv := newServer(t)
	var d Dialer
	var m Meter
	var l Link
	c := dial(t, &d, srv.addr(), &m, &l)
	s := srv.accept(t)
	if _, err := c.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	readFull(t, s, 6)

	l.Set(Blackhole)
	if l.Mode() != Blackhole {
		t.Fatalf("mode %v", l.Mode())
	}
	n, err := c.Write([]byte("swallowed"))
	if n != len("swallowed") || err != nil {
		t.Fatalf("blackholed write = %d, %v; want it to look sent", n, err)
	}
	if out := m.Traffic().BytesOut; out != 6 {
		t.Fatalf("BytesOut %d: swallowed bytes counted", out)
	}
	// The server gets end of stream with nothing after "before": the write never left.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(s)
	if err != nil || len(rest) != 0 {
		t.Fatalf("server read %q, %v after a blackholed write", rest, err)
	}
}

func TestBlackholeReadBlocksUntilDeadline(t *testing.T) {
	srv := newServer(t)
	var d Dialer
	var m Meter
	var l Link
	c := dial(t, &d, srv.addr(), &m, &l)
	s := srv.accept(t)

	l.Set(Blackhole)
	if _, err := s.Write([]byte("never seen")); err != nil {
		t.Fatal(err)
	}
	// The data is in the client's socket buffer, yet the read must not return it.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackholed read = %d, %v; want a timeout", n, err)
	}
	if in := m.Traffic().BytesIn; in != 0 {
		t.Fatalf("BytesIn %d under blackhole", in)
	}
}

// waitingInBlackhole is a connection whose link is blackholed, with a Read started on it;
// the Read's outcome arrives on res.
func waitingInBlackhole(t *testing.T) (net.Conn, *Link, <-chan error) {
	t.Helper()
	srv := newServer(t)
	var d Dialer
	l := new(Link)
	c := dial(t, &d, srv.addr(), nil, l)
	srv.accept(t)
	l.Set(Blackhole)

	res := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		res <- err
	}()
	return c, l, res
}

// A deadline set while a Read waits in the blackhole re-arms it, as crypto/tls relies on
// (it interrupts a handshake by setting a deadline in the past).
func TestBlackholeReadWokenByDeadlineChange(t *testing.T) {
	c, _, res := waitingInBlackhole(t)
	time.Sleep(10 * time.Millisecond) // usually lets the Read start waiting; either way the outcome is the same
	if err := c.SetDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v, want deadline exceeded", err)
	}
}

func TestBlackholeReadUnblockedByClose(t *testing.T) {
	c, _, res := waitingInBlackhole(t)
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-res; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close = %v, want net.ErrClosed", err)
	}
}

// A Read already in the kernel when the blackhole starts must not hand over what arrives,
// and after the heal that connection is dead (its stream lost bytes), not revived.
func TestBlackholedConnDiesAtHeal(t *testing.T) {
	srv := newServer(t)
	var d Dialer
	var m Meter
	var l Link
	c := dial(t, &d, srv.addr(), &m, &l)
	s := srv.accept(t)

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := c.Read(make([]byte, 64))
		res <- result{n, err}
	}()
	time.Sleep(10 * time.Millisecond) // usually lets the Read reach the kernel first
	l.Set(Blackhole)
	if _, err := s.Write([]byte("dropped")); err != nil {
		t.Fatal(err)
	}
	l.Set(Up)
	r := <-res
	if r.n != 0 || !isReset(r.err) {
		t.Fatalf("read across blackhole+heal = %d, %v; want a partition reset", r.n, r.err)
	}
	if _, err := c.Write([]byte("x")); !isReset(err) {
		t.Fatalf("write on the dead connection: %v", err)
	}
	if in := m.Traffic().BytesIn; in != 0 {
		t.Fatalf("BytesIn %d: dropped bytes counted", in)
	}
	// The broker side sees the connection go away.
	if rest, err := io.ReadAll(s); len(rest) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("server after cut: %q, %v", rest, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("owner's Close of a cut connection: %v", err)
	}

	// Healed: a new dial goes through and carries data.
	c2 := dial(t, &d, srv.addr(), &m, &l)
	s2 := srv.accept(t)
	if _, err := c2.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, s2, 5); string(got) != "again" {
		t.Fatalf("got %q", got)
	}
	if tr := m.Traffic(); tr.Conns != 2 || tr.BytesOut != 5 {
		t.Fatalf("traffic %+v", tr)
	}
}

func TestBlackholeDialTimesOut(t *testing.T) {
	srv := newServer(t)
	d := Dialer{Timeout: 50 * time.Millisecond}
	var m Meter
	var l Link
	l.Set(Blackhole)
	c, err := d.Dial(context.Background(), srv.addr(), &m, &l)
	var ne net.Error
	if c != nil || !errors.Is(err, ErrPartitioned) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial into blackhole = %v, %v; want a partition timeout", c, err)
	}
	if m.Traffic().Conns != 0 {
		t.Fatal("a connection was opened through a blackhole")
	}

	// The caller's context still rules: cancelled is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&Dialer{}).Dial(ctx, srv.addr(), &m, &l); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled dial: %v", err)
	}
}

func TestBlackholeDialProceedsAtHeal(t *testing.T) {
	srv := newServer(t)
	d := Dialer{Timeout: time.Minute}
	var l Link
	l.Set(Blackhole)
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := d.Dial(context.Background(), srv.addr(), nil, &l)
		res <- result{c, err}
	}()
	time.Sleep(10 * time.Millisecond)
	l.Set(Up)
	r := <-res
	if r.err != nil {
		t.Fatalf("dial waiting in blackhole, healed: %v", r.err)
	}
	defer r.c.Close()
	s := srv.accept(t)
	if _, err := r.c.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, s, 2); string(got) != "ok" {
		t.Fatalf("got %q", got)
	}
}

func TestResetClosesAndRefuses(t *testing.T) {
	srv := newServer(t)
	d := Dialer{Timeout: time.Hour} // a refused dial must not wait for it
	var m Meter
	var l Link
	c := dial(t, &d, srv.addr(), &m, &l)
	s := srv.accept(t)

	res := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		res <- err
	}()
	l.Set(Reset)
	if err := <-res; !isReset(err) {
		t.Fatalf("read on reset link: %v", err)
	}
	if _, err := c.Write([]byte("x")); !isReset(err) {
		t.Fatalf("write on reset link: %v", err)
	}
	if rest, err := io.ReadAll(s); len(rest) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("server after reset: %q, %v", rest, err)
	}
	segs := m.Traffic()
	if SegmentsCounted() == nil && segs.SegsOut == 0 {
		t.Fatalf("segments of the cut connection lost: %+v", segs)
	}

	_, err := d.Dial(context.Background(), srv.addr(), &m, &l)
	if !errors.Is(err, ErrPartitioned) || !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial on reset link: %v", err)
	}
	if m.Traffic().Conns != 1 {
		t.Fatal("refused dial counted as a connection")
	}

	l.Set(Up)
	c2 := dial(t, &d, srv.addr(), &m, &l)
	s2 := srv.accept(t)
	if _, err := s2.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, c2, 4); string(got) != "back" {
		t.Fatalf("got %q", got)
	}
}

// Blackhole then Reset: the blackholed connection is cut like a live one.
func TestBlackholeThenReset(t *testing.T) {
	_, l, res := waitingInBlackhole(t)
	l.Set(Reset)
	if err := <-res; !isReset(err) {
		t.Fatalf("read: %v", err)
	}
}

func TestLocalAddrsRoundRobin(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux routes all of 127/8 to loopback by default")
	}
	srv := newServer(t)
	d := Dialer{LocalAddrs: []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}}
	var want, got []string
	for i := range 6 {
		dial(t, &d, srv.addr(), nil, nil)
		s := srv.accept(t)
		want = append(want, d.LocalAddrs[i%3])
		got = append(got, s.RemoteAddr().(*net.TCPAddr).IP.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("source addresses %v, want %v", got, want)
		}
	}

	bad := Dialer{LocalAddrs: []string{"not-an-ip"}}
	if _, err := bad.Dial(context.Background(), srv.addr(), nil, nil); err == nil {
		t.Fatal("invalid local address accepted")
	}
}

func TestModeStrings(t *testing.T) {
	for _, m := range []Mode{Up, Blackhole, Reset} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Fatalf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("down"); err == nil {
		t.Fatal("unknown mode parsed")
	}
	var l Link
	l.Set(Mode(42))
	if l.Mode() != Up {
		t.Fatalf("unknown mode applied: %v", l.Mode())
	}
}

// Many connections, traffic, partitions flipping and meters polled at once: the race
// detector watches, and at the end every dial is accounted for and the link works.
func TestConcurrentUse(t *testing.T) {
	srv := newServer(t)
	go func() { // echo everything the clients send
		for s := range srv.conns {
			go func() {
				defer s.Close()
				io.Copy(s, s)
			}()
		}
	}()
	d := Dialer{Timeout: 100 * time.Millisecond}
	const terminals = 8
	var meters [terminals]Meter
	var links [terminals]Link
	var opened atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range terminals {
		wg.Go(func() {
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				c, err := d.Dial(ctx, srv.ln.Addr().String(), &meters[i], &links[i])
				if err != nil {
					continue
				}
				opened.Add(1)
				c.SetDeadline(time.Now().Add(20 * time.Millisecond))
				for range 5 {
					if _, err := c.Write(buf); err != nil {
						break
					}
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
			}
		})
	}
	wg.Go(func() {
		modes := []Mode{Up, Blackhole, Up, Reset, Blackhole, Reset, Up}
		for j := 0; ctx.Err() == nil; j++ {
			links[j%terminals].Set(modes[j%len(modes)])
			meters[(j+3)%terminals].Traffic()
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	var total Traffic
	for i := range terminals {
		total = total.Add(meters[i].Traffic())
		links[i].Set(Up)
	}
	if total.Conns != opened.Load() {
		t.Fatalf("meters counted %d connections, %d were opened", total.Conns, opened.Load())
	}
	if total.BytesOut == 0 || total.BytesIn > total.BytesOut {
		t.Fatalf("echo traffic %+v: more came back than was sent", total)
	}
	for i := range terminals {
		if len(links[i].conns) != 0 || len(meters[i].live) != 0 {
			t.Fatalf("terminal %d keeps closed connections: link %d, meter %d", i, len(links[i].conns), len(meters[i].live))
		}
	}
	c := dial(t, &d, srv.ln.Addr().String(), &meters[0], &links[0])
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, c, 4); string(got) != "ping" {
		t.Fatalf("after the storm: %q", got)
	}
}

// TestSegmentsCounted: on a native Linux kernel the probe finds segment counters; wherever it
// does not, it says so with ErrNoSegments (the measurements that need them refuse to run).
func TestSegmentsCounted(t *testing.T) {
	err := SegmentsCounted()
	if err != nil && !errors.Is(err, ErrNoSegments) {
		t.Fatalf("probe: %v, want nil or ErrNoSegments", err)
	}
	if err != nil {
		t.Logf("segments not counted here: %v", err)
	}
	if runtime.GOOS != "linux" && err == nil {
		t.Fatal("segments counted on a system without TCP_INFO")
	}
	if again := SegmentsCounted(); again != err {
		t.Fatalf("second answer %v differs from the first %v", again, err)
	}
}
