package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout is the dial timeout when Dialer.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Dialer dials TCP and wraps each connection so that its bytes go to a Meter and so that it
// can be cut. Safe for concurrent use; one Dialer is shared by the whole fleet. Its fields
// must not change after the first Dial.
type Dialer struct {
	Timeout time.Duration // default DefaultTimeout; also bounds a dial hanging in a blackhole
	// LocalAddrs are source IPs used round-robin (e.g. 127.0.0.2..) to widen the loopback
	// port space beyond one address's ~28 000 ephemeral ports; empty = kernel default.
	LocalAddrs []string
	// TCPKeepAlive is the interval of TCP keepalive probes; zero leaves them off, as the
	// agent's TMS link does (Go's default would probe an idle connection every 15 s: two
	// segments, 104 bytes on the air, about 18 MB a month, for what MQTT's keepalive already
	// notices).
	TCPKeepAlive time.Duration

	once    sync.Once
	locals  []*net.TCPAddr
	initErr error
	next    atomic.Uint64
}

// Dial opens a TCP connection to addr (host:port) whose traffic is counted in m and which
// obeys link. Either may be nil (not counted, never partitioned). Under a Reset link it
// fails at once; under a Blackhole link it waits for the link to heal, up to the timeout.
// Errors caused by the link match ErrPartitioned.
func (d *Dialer) Dial(ctx context.Context, addr string, m *Meter, link *Link) (net.Conn, error) {
	d.once.Do(d.init)
	if d.initErr != nil {
		return nil, d.initErr
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if link != nil {
		if err := awaitLink(ctx, link); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(addr), Err: err}
		}
	}
	nd := net.Dialer{KeepAlive: -1}
	if d.TCPKeepAlive > 0 {
		nd.KeepAlive = d.TCPKeepAlive
	}
	if len(d.locals) > 0 {
		nd.LocalAddr = d.locals[(d.next.Add(1)-1)%uint64(len(d.locals))]
	}
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := newConn(raw, m, link)
	if link == nil {
		if m != nil {
			m.attach(c)
		}
		return c, nil
	}
	if err := link.register(c); err != nil {
		// The link went down during the handshake: on a real modem those segments never
		// left, so the meter never hears of this connection.
		c.meter = nil
		c.state.Store(stClosed)
		_ = c.shut()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: raw.RemoteAddr(), Err: err}
	}
	return c, nil
}

// awaitLink returns when a dial may go ahead: at once if Up, an error at once if Reset,
// and under Blackhole when the link heals or the dial's time is up (a SYN into a dead path
// is answered by nothing).
func awaitLink(ctx context.Context, link *Link) error {
	for {
		heal, err := link.gate()
		if err != nil || heal == nil {
			return err
		}
		select {
		case <-heal:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errDialTimeout
			}
			return ctx.Err()
		}
	}
}

func (d *Dialer) init() {
	for _, s := range d.LocalAddrs {
		ip := net.ParseIP(s)
		if ip == nil {
			d.initErr = fmt.Errorf("wire: local address %q is not an IP address", s)
			return
		}
		d.locals = append(d.locals, &net.TCPAddr{IP: ip})
	}
}

// tcpAddr gives the dial error an address when addr is already numeric; otherwise none
// (resolving just to decorate an error is not worth a lookup).
func tcpAddr(addr string) net.Addr {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return nil
}
