// Package wire gives the fleet simulator counting, partitionable TCP connections: how it
// measures the bytes a terminal would put on the air, and how it cuts a terminal's network
// path without touching the broker.
//
// The wrapper adds no goroutine per connection: bytes are counted inline by the caller's
// Read and Write, segment counts are read from the kernel (TCP_INFO) only when a Meter is
// asked or a connection closes, and partitions are applied by Link.Set walking the few live
// connections of that one terminal.
package wire

import (
	"sync"
	"sync/atomic"
)

// HeaderBytes is the IPv4 (20) plus TCP (20) header with the timestamp option (12) that
// Linux puts on every segment: what a mobile network bills on top of the payload.
const HeaderBytes = 52

// Traffic is what crossed one or many connections.
type Traffic struct {
	BytesIn, BytesOut int64 // TCP payload (MQTT, plus TLS records when TLS is on)
	SegsIn, SegsOut   int64 // TCP segments incl. pure ACKs, from TCP_INFO (linux); 0 elsewhere
	Conns             int64 // connections opened
}

// Add returns the field-wise sum of t and u.
func (t Traffic) Add(u Traffic) Traffic {
	return Traffic{
		BytesIn:  t.BytesIn + u.BytesIn,
		BytesOut: t.BytesOut + u.BytesOut,
		SegsIn:   t.SegsIn + u.SegsIn,
		SegsOut:  t.SegsOut + u.SegsOut,
		Conns:    t.Conns + u.Conns,
	}
}

// IPBytes is what a mobile network bills: payload plus IPv4+TCP headers (with the timestamp
// option, HeaderBytes) for every segment, both directions. Where segment counts are not
// available (SegmentsCounted says so: not Linux, or an emulator) it is the payload alone,
// an underestimate.
func (t Traffic) IPBytes() int64 {
	return t.BytesIn + t.BytesOut + (t.SegsIn+t.SegsOut)*HeaderBytes
}

// Meter counts one terminal's traffic over all its connections (reconnects included). The
// zero value is ready to use; a Meter must not be copied after first use.
type Meter struct {
	bytesIn, bytesOut atomic.Int64
	conns             atomic.Int64

	// mu guards the segment totals and the live set together, so that a connection's
	// segments move from "live, read now" to "closed total" atomically with respect to
	// Traffic: never counted twice, never missed.
	mu              sync.Mutex
	segsIn, segsOut int64
	live            []*conn
}

// Traffic returns what crossed the meter's connections: closed ones plus live ones (their
// segment counters are read from the kernel now).
func (m *Meter) Traffic() Traffic {
	t := Traffic{
		BytesIn:  m.bytesIn.Load(),
		BytesOut: m.bytesOut.Load(),
		Conns:    m.conns.Load(),
	}
	m.mu.Lock()
	t.SegsIn, t.SegsOut = m.segsIn, m.segsOut
	for _, c := range m.live {
		in, out := c.segments()
		t.SegsIn += in
		t.SegsOut += out
	}
	m.mu.Unlock()
	return t
}

// Counted is Traffic without asking the kernel: bytes and connections are current, but
// segments are those of closed connections only. It costs a few atomic loads, for callers
// that poll thousands of meters often (a live progress line) and need segments only at the
// end.
func (m *Meter) Counted() Traffic {
	t := Traffic{
		BytesIn:  m.bytesIn.Load(),
		BytesOut: m.bytesOut.Load(),
		Conns:    m.conns.Load(),
	}
	m.mu.Lock()
	t.SegsIn, t.SegsOut = m.segsIn, m.segsOut
	m.mu.Unlock()
	return t
}

func (m *Meter) attach(c *conn) {
	m.conns.Add(1)
	m.mu.Lock()
	m.live = append(m.live, c)
	m.mu.Unlock()
}

// detach takes the connection's final segment counts (it must still be open) and removes
// it from the live set.
func (m *Meter) detach(c *conn) {
	m.mu.Lock()
	in, out := c.segments()
	m.segsIn += in
	m.segsOut += out
	m.live = removeConn(m.live, c)
	m.mu.Unlock()
}

// removeConn deletes c from s without keeping order; a terminal has one or two live
// connections, so a scan beats a map in memory and time.
func removeConn(s []*conn, c *conn) []*conn {
	for i, x := range s {
		if x == c {
			last := len(s) - 1
			s[i] = s[last]
			s[last] = nil
			return s[:last]
		}
	}
	return s
}
