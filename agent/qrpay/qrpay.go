// Package qrpay is the terminal's client of a QR payment provider (termconfig qrHosts): it
// creates an order whose QR code the customer scans with a wallet, follows it to its end
// (paid, cancelled, expired), cancels it, and refunds a paid one. The API is the one the
// demo's provider, internal/hostsim, serves (docs/hostsim.md, "QR host"):
//
//	POST /qr/orders              {amount, currency, tid} → 201 order
//	GET  /qr/orders/{id}         → 200 order
//	POST /qr/orders/{id}/cancel  → 200 order (cancelled); 409 order, already final
//	POST /qr/orders/{id}/refund  {amount} → 200 order + refundId; 409 order, refused
//
// Amounts are minor units throughout. Every answer is read up to MaxResponse bytes and
// checked before use: a provider that answers garbage gets an error, never an order with
// made-up fields.
package qrpay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/posagent/posagent/agent/termconfig"
)

// MaxResponse bounds what is read of an answer.
const MaxResponse = 64 << 10

// Errors. ErrUnreachable, ErrBadResponse: the outcome of the request is unknown (an order
// may have been made, cancelled or refunded); Get tells. The others are the provider's
// definite answers.
var (
	// ErrUnreachable: the request failed on the way (connection, TLS, timeout) or the
	// provider answered 5xx. The caller may retry.
	ErrUnreachable = errors.New("qrpay: provider unreachable")
	// ErrBadResponse: the provider answered something that is not an order.
	ErrBadResponse = errors.New("qrpay: malformed answer from the provider")
	// ErrNotFound: the provider has no such order (404).
	ErrNotFound = errors.New("qrpay: no such order")
	// ErrFinal: the order was already paid, cancelled or expired and cannot be cancelled (409);
	// the order comes with it.
	ErrFinal = errors.New("qrpay: the order is already final")
	// ErrRefundRefused: the provider refused the refund (409: the order is not paid, or the
	// refunds would exceed its amount); the order comes with it.
	ErrRefundRefused = errors.New("qrpay: refund refused")
	// ErrInvalid: the call's arguments are wrong; nothing was sent.
	ErrInvalid = errors.New("qrpay: invalid request")
	// ErrConfig: the QR host's configuration cannot be used.
	ErrConfig = errors.New("qrpay: bad QR host configuration")
)

// ProviderError is any other 4xx answer: the provider refused the request as it stands.
type ProviderError struct {
	Status  int    // HTTP status
	Message string // the provider's "error" text, shortened and cleaned
}

func (e *ProviderError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("qrpay: provider refused: HTTP %d", e.Status)
	}
	return fmt.Sprintf("qrpay: provider refused: HTTP %d: %s", e.Status, e.Message)
}

// Status is the state of an order.
type Status string

// Order statuses. Pending and scanned are open; the others are final.
const (
	StatusPending   Status = "pending"
	StatusScanned   Status = "scanned" // the customer has the order in the wallet, not paid yet
	StatusPaid      Status = "paid"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
)

func (s Status) known() bool {
	switch s {
	case StatusPending, StatusScanned, StatusPaid, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// Order is a QR order as the provider has it.
type Order struct {
	ID       string
	Status   Status
	Amount   int64 // minor units
	Currency string
	// QR is the payload to show as a QR code.
	QR string
	// RRN is the provider's reference of the payment, set once paid.
	RRN string
	// Refunded is the total refunded so far, minor units.
	Refunded  int64
	ExpiresAt time.Time
}

// Final reports whether the order can change no more (refunds aside).
func (o Order) Final() bool {
	switch o.Status {
	case StatusPaid, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// Refund is the outcome of a refund.
type Refund struct {
	ID     string // the provider's refund id
	Amount int64  // this refund, minor units
	Order  Order  // the order after it (Refunded includes this refund)
}

// Options configure a Client.
type Options struct {
	// HTTP is the client to use as it is (its transport's TLS settings then apply, not
	// RootCAs). Default: a client of its own with a 15 s timeout per request.
	HTTP *http.Client
	// RootCAs are the roots an https provider is checked against. The configuration's
	// caCertificate names an entry of its certificates list rather than holding the
	// certificate, so the caller resolves it into this pool; when caCertificate holds a PEM
	// certificate itself, that is used instead. Neither: the system roots, unless
	// caCertificate names a certificate the caller did not resolve (New refuses that rather
	// than trust more than the configuration says).
	RootCAs *x509.CertPool
	Logger  *slog.Logger
	// TID is the terminal id the provider knows the terminal by.
	TID string
}

// Client talks to one QR provider. It is safe for concurrent use.
type Client struct {
	base     string // scheme://host[/path], no trailing slash
	merchant string
	tid      string
	poll     time.Duration
	http     *http.Client
	log      *slog.Logger
}

// New makes a client of the provider h (URL, merchantId, caCertificate, pollIntervalSec).
// The URL may be http (the demo's provider on loopback) or https.
func New(h termconfig.QRHost, o Options) (*Client, error) {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: url must be http(s)://host[:port][/path] without credentials or query", ErrConfig)
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), ""
	if o.TID == "" {
		return nil, fmt.Errorf("%w: no terminal id", ErrConfig)
	}
	c := &Client{base: u.String(), merchant: h.MerchantID, tid: o.TID, http: o.HTTP, log: o.Logger,
		poll: time.Duration(h.PollIntervalSec) * time.Second}
	if c.poll <= 0 {
		c.poll = time.Second
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("svc", "qrpay", "provider", h.Name)
	if c.http == nil {
		roots := o.RootCAs
		if roots == nil && h.CACertificate != "" {
			if !strings.Contains(h.CACertificate, "-----BEGIN") {
				return nil, fmt.Errorf("%w: caCertificate %q names a certificate: pass it as Options.RootCAs", ErrConfig, h.CACertificate)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM([]byte(h.CACertificate)) {
				return nil, fmt.Errorf("%w: caCertificate holds no PEM certificate", ErrConfig)
			}
		}
		tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			tr = dt.Clone()
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
		c.http = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	}
	return c, nil
}

// Create makes an order for amountMinor in currency (as the provider names currencies, e.g.
// "156"; empty: the provider's default).
func (c *Client) Create(ctx context.Context, amountMinor int64, currency string) (Order, error) {
	if amountMinor <= 0 {
		return Order{}, fmt.Errorf("%w: amount %d", ErrInvalid, amountMinor)
	}
	body := struct {
		Amount     int64  `json:"amount"`
		Currency   string `json:"currency,omitempty"`
		TID        string `json:"tid"`
		MerchantID string `json:"merchantId,omitempty"`
	}{amountMinor, currency, c.tid, c.merchant}
	code, data, err := c.do(ctx, http.MethodPost, "/qr/orders", body)
	if err != nil {
		return Order{}, err
	}
	if code != http.StatusCreated && code != http.StatusOK {
		return Order{}, c.refusal(code, data)
	}
	o, err := decodeOrder(data)
	if err != nil {
		return Order{}, err
	}
	if o.QR == "" {
		return Order{}, fmt.Errorf("%w: order %s without a QR payload", ErrBadResponse, o.ID)
	}
	if o.Amount != amountMinor {
		// Not the order asked for: showing its code would charge the customer another sum.
		return Order{}, fmt.Errorf("%w: order %s is for %d, asked %d", ErrBadResponse, o.ID, o.Amount, amountMinor)
	}
	return o, nil
}

// Get reads an order.
func (c *Client) Get(ctx context.Context, id string) (Order, error) {
	p, err := orderPath(id, "")
	if err != nil {
		return Order{}, err
	}
	code, data, err := c.do(ctx, http.MethodGet, p, nil)
	if err != nil {
		return Order{}, err
	}
	if code != http.StatusOK {
		return Order{}, c.refusal(code, data)
	}
	return decodeOrderID(data, id)
}

// Cancel cancels an open order. An order already final is returned as it is, with ErrFinal:
// the customer may have paid meanwhile.
func (c *Client) Cancel(ctx context.Context, id string) (Order, error) {
	p, err := orderPath(id, "/cancel")
	if err != nil {
		return Order{}, err
	}
	code, data, err := c.do(ctx, http.MethodPost, p, nil)
	if err != nil {
		return Order{}, err
	}
	switch code {
	case http.StatusOK:
		return decodeOrderID(data, id)
	case http.StatusConflict:
		o, err := decodeOrderID(data, id)
		if err != nil {
			return Order{}, err
		}
		return o, fmt.Errorf("%w: order %s is %s", ErrFinal, id, o.Status)
	}
	return Order{}, c.refusal(code, data)
}

// Refund refunds amountMinor of a paid order. A refusal (ErrRefundRefused) comes with the
// order as the provider has it. Each call is a new refund to the provider: after
// ErrUnreachable, Get (Refunded) tells whether it happened before trying again.
func (c *Client) Refund(ctx context.Context, id string, amountMinor int64) (Refund, error) {
	if amountMinor <= 0 {
		return Refund{}, fmt.Errorf("%w: amount %d", ErrInvalid, amountMinor)
	}
	p, err := orderPath(id, "/refund")
	if err != nil {
		return Refund{}, err
	}
	code, data, err := c.do(ctx, http.MethodPost, p, struct {
		Amount int64 `json:"amount"`
	}{amountMinor})
	if err != nil {
		return Refund{}, err
	}
	switch code {
	case http.StatusOK, http.StatusCreated:
		o, rid, err := decodeRefund(data)
		if err != nil {
			return Refund{}, err
		}
		if o.ID != id {
			return Refund{}, fmt.Errorf("%w: refund of order %q answered for %q", ErrBadResponse, id, o.ID)
		}
		return Refund{ID: rid, Amount: amountMinor, Order: o}, nil
	case http.StatusConflict:
		o, err := decodeOrderID(data, id)
		if err != nil {
			return Refund{}, err
		}
		return Refund{Order: o}, fmt.Errorf("%w: order %s is %s, %d of %d refunded", ErrRefundRefused, id, o.Status, o.Refunded, o.Amount)
	}
	return Refund{}, c.refusal(code, data)
}

// Wait polls the order every poll (≤ 0: the configuration's pollIntervalSec, else 1 s) until
// it is final, and returns it. onChange, when set, sees the first state read and then every
// change of status. A provider that cannot be reached is polled on; Wait ends early only on
// the end of ctx (the last order read comes with the error) or a definite error (ErrNotFound,
// ErrBadResponse, a ProviderError).
func (c *Client) Wait(ctx context.Context, id string, poll time.Duration, onChange func(Order)) (Order, error) {
	if poll <= 0 {
		poll = c.poll
	}
	var last Order
	failing := 0 // polls failed in a row: an outage is logged at its start and its end
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("qrpay: waiting for order %s: %w", id, ctx.Err())
		case <-timer.C:
		}
		o, err := c.Get(ctx, id)
		switch {
		case err == nil:
			if failing > 0 {
				c.log.Info("QR provider answers again", "order", id, "failedPolls", failing)
				failing = 0
			}
			if o.Status != last.Status && onChange != nil {
				onChange(o)
			}
			last = o
			if o.Final() {
				return o, nil
			}
		case ctx.Err() != nil:
			return last, fmt.Errorf("qrpay: waiting for order %s: %w", id, ctx.Err())
		case errors.Is(err, ErrUnreachable):
			failing++
			level := slog.LevelDebug
			if failing == 1 {
				level = slog.LevelWarn
			}
			c.log.Log(ctx, level, "QR order poll failed, polling on", "order", id, "err", err)
		default:
			return last, err
		}
		timer.Reset(poll)
	}
}

// orderPath is the path of an order (and an action on it), escaped: whatever the id holds,
// it stays one segment.
func orderPath(id, action string) (string, error) {
	if id == "" || len(id) > maxID || id == "." || id == ".." {
		return "", fmt.Errorf("%w: order id %q", ErrInvalid, clean(id, 40))
	}
	return "/qr/orders/" + url.PathEscape(id) + action, nil
}

// do sends one request and reads the answer, bounded. A transport failure or a 5xx is
// ErrUnreachable; any other status is for the caller.
func (c *Client) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("qrpay: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("qrpay: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.log.Debug("QR provider", "method", method, "path", path, "err", err)
		return 0, nil, fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	c.log.Debug("QR provider", "method", method, "path", path, "status", resp.StatusCode, "bytes", len(data),
		"took", time.Since(start))
	switch {
	case resp.StatusCode >= 500:
		return 0, nil, fmt.Errorf("%w: %s %s: HTTP %d%s", ErrUnreachable, method, path, resp.StatusCode, suffix(errorText(data)))
	case err != nil:
		// The answer broke off: whatever it said is unknown.
		return 0, nil, fmt.Errorf("%w: %s %s: reading the answer: %w", ErrUnreachable, method, path, err)
	case len(data) > MaxResponse:
		return 0, nil, fmt.Errorf("%w: answer above %d bytes", ErrBadResponse, MaxResponse)
	}
	return resp.StatusCode, data, nil
}

// refusal is the error of an unexpected status below 500.
func (c *Client) refusal(code int, data []byte) error {
	switch {
	case code == http.StatusNotFound:
		return ErrNotFound
	case code >= 400:
		return &ProviderError{Status: code, Message: errorText(data)}
	}
	return fmt.Errorf("%w: HTTP %d", ErrBadResponse, code)
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// errorText is the "error" of a provider's error answer, cut to a line of printable text:
// it goes into errors and logs.
func errorText(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	return clean(e.Error, 200)
}

func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}
