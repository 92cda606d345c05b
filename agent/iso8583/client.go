package iso8583

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"
)

// Errors of Client.Exchange; each is returned wrapped with the cause.
var (
	// ErrConnect: no connection could be made to any address. Nothing was sent: no reversal
	// is needed.
	ErrConnect = errors.New("iso8583: cannot connect to the host")
	// ErrNoAnswer: the request was sent and no answer came before the timeout (or the
	// context ended).
	ErrNoAnswer = errors.New("iso8583: no answer from the host")
	// ErrLink: the connection broke after the request was (perhaps) written, or the answer
	// frame was cut or too long.
	ErrLink = errors.New("iso8583: link broken during the exchange")
)

// Client defaults.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultTimeout        = 30 * time.Second
	// ConnectRetryPause is the pause between the first round of connect attempts (every
	// address once, in order) and the second, last round.
	ConnectRetryPause = time.Second
	// writeTimeout bounds the write of a request (a full socket buffer, a stalled peer).
	writeTimeout = 10 * time.Second
)

// ClientOptions configure a Client.
type ClientOptions struct {
	Addrs          []string      // host:port, tried in order (primary, backup)
	ConnectTimeout time.Duration // per attempt, TLS handshake included; default 10 s
	// Timeout is the answer timeout after the request is written; default 30 s (terminal
	// config hostParameters.responseTimeoutSec).
	Timeout time.Duration
	TLS     *tls.Config // nil: plain TCP
	// Dialer is for tests; nil: a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Client carries exchanges to the acquirer host: one request frame and its answer on a fresh
// connection each. It is safe for concurrent use.
type Client struct {
	o     ClientOptions
	pause time.Duration
}

// NewClient makes a client with o, defaults filled in.
func NewClient(o ClientOptions) *Client {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Dialer == nil {
		var d net.Dialer
		o.Dialer = d.DialContext
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Addrs = append([]string(nil), o.Addrs...)
	return &Client{o: o, pause: ConnectRetryPause}
}

// Exchange sends one frame on a fresh connection and reads one answer frame. It never sends a
// request twice.
//
// Connecting: every address once in order; if none answers, after ConnectRetryPause, every
// address once more. Each attempt (TCP connect plus TLS handshake) is bounded by
// ConnectTimeout. The request is written only once, on the first connection made.
//
// Errors (typed, wrapped): ErrConnect — no connection could be made: nothing was sent, no
// reversal needed; ErrNoAnswer — sent, no answer (not one byte) before Timeout or the end of
// ctx; ErrLink — the connection broke after the request was (perhaps) written, or the answer
// frame was cut or over MaxFrame. A frame that is not a whole frame (its length prefix
// disagreeing with its size) is refused with ErrMalformed before connecting.
func (c *Client) Exchange(ctx context.Context, frame []byte) ([]byte, error) {
	if len(frame) < lenSize+1 || int(frame[0])<<8|int(frame[1]) != len(frame)-lenSize || len(frame)-lenSize > MaxFrame {
		return nil, malformed(FieldFrame, "request is not one whole frame")
	}
	conn, addr, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	log := c.o.Logger.With("addr", addr)

	// The end of ctx interrupts the write and the read.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	start := time.Now()
	_ = conn.SetWriteDeadline(start.Add(writeTimeout))
	if ctx.Err() != nil { // ended before anything was written
		return nil, fmt.Errorf("%w: %w", ErrConnect, context.Cause(ctx))
	}
	if _, err := conn.Write(frame); err != nil {
		log.Warn("iso8583: request write failed", "err", err)
		return nil, fmt.Errorf("%w: write: %w", ErrLink, c.cause(ctx, err))
	}
	sent := time.Now()
	_ = conn.SetReadDeadline(sent.Add(c.o.Timeout))
	if ctx.Err() != nil { // ended before the deadline was set: AfterFunc's deadline was overwritten
		return nil, fmt.Errorf("%w: %w", ErrNoAnswer, context.Cause(ctx))
	}
	cr := &countReader{r: conn}
	answer, err := ReadFrame(cr)
	if err != nil {
		timeout := errors.Is(err, os.ErrDeadlineExceeded)
		switch {
		case cr.n == 0 && (timeout || ctx.Err() != nil):
			log.Warn("iso8583: no answer", "after", time.Since(sent).Round(time.Millisecond))
			return nil, fmt.Errorf("%w: %w", ErrNoAnswer, c.cause(ctx, err))
		case errors.Is(err, ErrTooLong):
			log.Warn("iso8583: answer too long")
			return nil, fmt.Errorf("%w: %w", ErrLink, err)
		default:
			log.Warn("iso8583: answer cut", "bytes", cr.n, "err", err)
			if err == io.EOF {
				err = errors.New("closed by the host before answering")
			}
			return nil, fmt.Errorf("%w: %w", ErrLink, c.cause(ctx, err))
		}
	}
	log.Debug("iso8583: exchange", "sent", len(frame), "received", len(answer),
		"took", time.Since(start).Round(time.Millisecond))
	return answer, nil
}

// cause prefers the context's error when the context ended.
func (c *Client) cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// connect makes one connection: every address in order, twice with a pause in between.
func (c *Client) connect(ctx context.Context) (net.Conn, string, error) {
	if len(c.o.Addrs) == 0 {
		return nil, "", fmt.Errorf("%w: no host address configured", ErrConnect)
	}
	var errs []error
	for round := range 2 {
		if round > 0 {
			t := time.NewTimer(c.pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, "", fmt.Errorf("%w: %w", ErrConnect, errors.Join(append(errs, context.Cause(ctx))...))
			case <-t.C:
			}
		}
		for _, addr := range c.o.Addrs {
			if ctx.Err() != nil {
				return nil, "", fmt.Errorf("%w: %w", ErrConnect, errors.Join(append(errs, context.Cause(ctx))...))
			}
			conn, err := c.dial(ctx, addr)
			if err == nil {
				return conn, addr, nil
			}
			c.o.Logger.Warn("iso8583: connect failed", "addr", addr, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	return nil, "", fmt.Errorf("%w: %w", ErrConnect, errors.Join(errs...))
}

// dial makes one connection to addr, the TLS handshake included, within ConnectTimeout.
func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.ConnectTimeout)
	defer cancel()
	conn, err := c.o.Dialer(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.o.TLS == nil {
		return conn, nil
	}
	cfg := c.o.TLS.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// countReader counts the bytes read, to tell silence from a cut answer.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
