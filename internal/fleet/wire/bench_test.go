package wire

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// sink is a loopback server that discards everything it receives.
func sink(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func writeLoop(b *testing.B, c net.Conn, n int) {
	buf := make([]byte, 1024)
	for range n {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrite1KiB is the cost of one 1 KiB write to a loopback socket, bare and through
// the wrapper (counted by a Meter, under an Up Link).
func BenchmarkWrite1KiB(b *testing.B) {
	addr := sink(b)
	b.Run("bare", func(b *testing.B) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.SetBytes(1024)
		b.ResetTimer()
		writeLoop(b, c, b.N)
	})
	b.Run("wrapped", func(b *testing.B) {
		var d Dialer
		var m Meter
		var l Link
		c, err := d.Dial(context.Background(), addr, &m, &l)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.SetBytes(1024)
		b.ResetTimer()
		writeLoop(b, c, b.N)
	})
}

// BenchmarkWrapperRatio interleaves bare and wrapped writes in rounds, so both see the
// same machine load (the CI machines are shared), and reports wrapped/bare time.
func BenchmarkWrapperRatio(b *testing.B) {
	addr := sink(b)
	bare, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	var d Dialer
	var m Meter
	var l Link
	wrapped, err := d.Dial(context.Background(), addr, &m, &l)
	if err != nil {
		b.Fatal(err)
	}
	defer wrapped.Close()

	const round = 256
	var tBare, tWrapped time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		t0 := time.Now()
		writeLoop(b, bare, n)
		t1 := time.Now()
		writeLoop(b, wrapped, n)
		tBare += t1.Sub(t0)
		tWrapped += time.Since(t1)
	}
	b.ReportMetric(float64(tWrapped)/float64(tBare), "wrapped/bare")
	b.ReportMetric(float64(tWrapped-tBare)/float64(b.N), "extra-ns/write")
}

// nullConn is the innermost fake: a socket that accepts everything instantly, so the
// wrapper's own cost is all that is measured.
type nullConn struct{ net.Conn }

func (nullConn) Write(b []byte) (int, error) { return len(b), nil }
func (nullConn) Read(b []byte) (int, error)  { return len(b), nil }
func (nullConn) Close() error                { return nil }

// BenchmarkWrapperOverhead is the wrapper's own cost per Write and Read, the socket taken
// out (the "bare" figure is a direct call of the same null conn).
func BenchmarkWrapperOverhead(b *testing.B) {
	buf := make([]byte, 1024)
	var inner net.Conn = nullConn{}
	b.Run("bare", func(b *testing.B) {
		for range b.N {
			inner.Write(buf)
			inner.Read(buf)
		}
	})
	b.Run("wrapped", func(b *testing.B) {
		var m Meter
		var l Link
		c := newConn(inner, &m, &l)
		if err := l.register(c); err != nil {
			b.Fatal(err)
		}
		var w net.Conn = c
		b.ResetTimer()
		for range b.N {
			w.Write(buf)
			w.Read(buf)
		}
	})
}

// BenchmarkWrapConn is the wrapper's memory per connection (B/op, allocs/op): what 10 000
// terminals pay on top of their sockets.
func BenchmarkWrapConn(b *testing.B) {
	var inner net.Conn = nullConn{}
	b.ReportAllocs()
	for range b.N {
		var m Meter
		var l Link
		c := newConn(inner, &m, &l)
		if err := l.register(c); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkTraffic is the cost of reading one live meter (one TCP_INFO getsockopt on linux)
// and of Counted (atomics only), for callers polling a whole fleet.
func BenchmarkTraffic(b *testing.B) {
	addr := sink(b)
	var d Dialer
	var m Meter
	c, err := d.Dial(context.Background(), addr, &m, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("Traffic", func(b *testing.B) {
		for range b.N {
			m.Traffic()
		}
	})
	b.Run("Counted", func(b *testing.B) {
		for range b.N {
			m.Counted()
		}
	})
}
