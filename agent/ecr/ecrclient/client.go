// Package ecrclient is the cash register's side of the terminal's ECR API (the Smart POS /v2
// API and the integrated-till operations added to it): typed calls, the envelope and its error
// codes, and Follow, which polls a process to its end the way the API asks (once a second).
// The command line (`posagent ecr`), the demo, the integration tests and the benchmark use it.
package ecrclient

import (
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
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths of the API. The ones of the integrated-till operations marked "process" answer a
// processId to follow, like payment and refund.
const (
	PathPayment         = "/v2/payment"
	PathStatus          = "/v2/status"
	PathRefund          = "/v2/refund"
	PathActualize       = "/v2/actualize"
	PathRegister        = "/v2/register"
	PathRevoke          = "/v2/revoke"
	PathDeviceInfo      = "/v2/deviceinfo"
	PathVoid            = "/v2/void"             // process
	PathSettlement      = "/v2/settlement"       // process
	PathPreauth         = "/v2/preauth"          // process
	PathPreauthComplete = "/v2/preauth/complete" // process
	PathBalance         = "/v2/balance"          // process
	PathCashWithdrawal  = "/v2/cashwithdrawal"   // process
	PathTopUp           = "/v2/topup"            // process
	PathReadCard        = "/v2/readcard"         // process
	PathEmergencyCancel = "/v2/emergencycancel"  // process
	PathReport          = "/v2/report"
	PathReceiptCopy     = "/v2/receiptcopy"
	PathEcho            = "/v2/echo"
	PathCancel          = "/v2/cancel"
)

const (
	// MaxResponseSize bounds what is read of one response.
	MaxResponseSize = 1 << 20
	// DefaultPollInterval is the status polling interval the API recommends.
	DefaultPollInterval = time.Second
	// DefaultTimeout bounds one request when Options.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// RegisterTimeout is the least time Register waits: the terminal answers only once an
	// operator has approved the cash register on the terminal.
	RegisterTimeout = 3 * time.Minute
)

// HeaderToken is the protected mode's header, sent on every call but register.
const HeaderToken = "accessToken"

// Options configure a Client. All are optional.
type Options struct {
	// HTTP, when set, is used as it is; Insecure and RootCAs then do not apply.
	HTTP *http.Client
	// Token is the protected mode's access token (see SetToken).
	Token string
	// Insecure skips verification of the terminal's certificate, which is self-signed.
	Insecure bool
	// RootCAs verify the terminal's certificate instead of the system's roots.
	RootCAs *x509.CertPool
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger gets Follow's retries after a failed poll; nil discards them.
	Logger *slog.Logger
}

// Client calls one terminal. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	baseErr error
	hc      *http.Client
	timeout time.Duration
	log     *slog.Logger

	mu    sync.Mutex
	token string
}

// TransportError is a request that got no answer: connection refused or broken, TLS failure,
// timeout. The operation may or may not have reached the terminal. Path is the API path, never
// the query, which can hold a refresh token.
type TransportError struct {
	Path string
	Err  error
}

func (e *TransportError) Error() string { return "ecrclient: GET " + e.Path + ": " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// ErrBaseURL is wrapped by every call's error when New was given an unusable base URL.
var ErrBaseURL = errors.New("ecrclient: bad base URL")

// New returns a client of the terminal at base ("http://192.168.80.4:8080"; without a scheme,
// http is assumed). A bad base makes every call fail with ErrBaseURL.
func New(base string, o Options) *Client {
	c := &Client{token: o.Token, timeout: o.Timeout, log: o.Logger}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.base, c.baseErr = parseBase(base)
	c.hc = o.HTTP
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    o.RootCAs,
			// The terminal's certificate is self-signed; whoever sets Insecure has chosen to
			// trust the network instead.
			InsecureSkipVerify: o.Insecure,
		}
		c.hc = &http.Client{
			Transport: tr,
			// A redirect would carry the accessToken header (a custom header, which Go does not
			// strip) to wherever it points; the terminal never redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

func parseBase(base string) (*url.URL, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBaseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme %q, want http or https", ErrBaseURL, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: no host", ErrBaseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment, u.RawPath = "", "", ""
	return u, nil
}

// SetToken sets the access token sent from now on; empty sends none. Register and Revoke set it
// themselves.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
}

// CloseIdleConnections closes the kept-alive connections to the terminal; the client stays
// usable. For tests and benchmarks that make many clients.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Token is the access token in use.
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// apiPath makes "payment" and "/v2/payment" the same call; a path with a leading slash is used
// as given.
func apiPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return "/v2/" + p
}

// Call performs any call and returns its envelope. For an answer that is not a success the
// error is an *APIError and the envelope holds what the body said.
func (c *Client) Call(ctx context.Context, path string, q url.Values) (Envelope, error) {
	return c.call(ctx, path, q, true, c.timeout)
}

func (c *Client) call(ctx context.Context, path string, q url.Values, withToken bool, timeout time.Duration) (Envelope, error) {
	path = apiPath(path)
	if c.baseErr != nil {
		return Envelope{}, c.baseErr
	}
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Envelope{}, fmt.Errorf("ecrclient: GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	if tok := c.Token(); withToken && tok != "" {
		req.Header.Set(HeaderToken, tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL, query included (revoke's refreshToken): keep only
		// its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Envelope{}, &TransportError{Path: path, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return Envelope{}, &TransportError{Path: path, Err: err}
	}
	if len(body) > MaxResponseSize {
		return Envelope{HTTP: resp.StatusCode}, fmt.Errorf("%w: GET %s: over %d bytes", ErrTooLarge, path, MaxResponseSize)
	}
	env, err := DecodeEnvelope(resp.StatusCode, body)
	if err != nil && errors.Is(err, ErrMalformed) {
		err = fmt.Errorf("GET %s: %w", path, err)
	}
	return env, err
}

// data calls path and returns the success's data.
func (c *Client) data(ctx context.Context, path string, q url.Values) (json.RawMessage, error) {
	env, err := c.Call(ctx, path, q)
	if err != nil {
		return nil, err
	}
	return env.Data, nil
}

// Start starts a process operation (payment, refund, void, settlement, ...) and returns its
// processId for Status and Follow.
func (c *Client) Start(ctx context.Context, path string, q url.Values) (string, error) {
	d, err := c.data(ctx, path, q)
	if err != nil {
		return "", err
	}
	s, err := DecodeStarted(d)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", apiPath(path), err)
	}
	return s.ProcessID, nil
}

func amount(n int64) string { return strconv.FormatInt(n, 10) }

// Payment starts a purchase of amount whole currency units; owncheque asks the terminal not to
// print (the cash register prints from ChequeInfo).
func (c *Client) Payment(ctx context.Context, amt int64, owncheque bool) (string, error) {
	return c.Start(ctx, PathPayment, url.Values{
		"amount": {amount(amt)}, "owncheque": {own(owncheque)}})
}

// Refund starts a refund of amount by method (MethodCard or MethodQR) of the payment
// transactionID (its rrn or orderNumber).
func (c *Client) Refund(ctx context.Context, amt int64, method, transactionID string, owncheque bool) (string, error) {
	return c.Start(ctx, PathRefund, url.Values{
		"amount": {amount(amt)}, "method": {method}, "transactionId": {transactionID},
		"owncheque": {own(owncheque)}})
}

// Void starts the cancellation of a payment of the current business day; amount 0 voids the
// whole payment.
func (c *Client) Void(ctx context.Context, transactionID string, amt int64, owncheque bool) (string, error) {
	q := url.Values{"transactionId": {transactionID}, "owncheque": {own(owncheque)}}
	if amt != 0 {
		q.Set("amount", amount(amt))
	}
	return c.Start(ctx, PathVoid, q)
}

func own(owncheque bool) string { return strconv.FormatBool(owncheque) }

// Settlement starts the close of the business day.
func (c *Client) Settlement(ctx context.Context, owncheque bool) (string, error) {
	return c.Start(ctx, PathSettlement, url.Values{"owncheque": {own(owncheque)}})
}

// Preauth starts a pre-authorization of amount.
func (c *Client) Preauth(ctx context.Context, amt int64, owncheque bool) (string, error) {
	return c.Start(ctx, PathPreauth, url.Values{"amount": {amount(amt)}, "owncheque": {own(owncheque)}})
}

// PreauthComplete starts the completion of the pre-authorization transactionID for amount.
func (c *Client) PreauthComplete(ctx context.Context, transactionID string, amt int64, owncheque bool) (string, error) {
	return c.Start(ctx, PathPreauthComplete, url.Values{
		"transactionId": {transactionID}, "amount": {amount(amt)}, "owncheque": {own(owncheque)}})
}

// CashWithdrawal starts a cash withdrawal of amount from the customer's card.
func (c *Client) CashWithdrawal(ctx context.Context, amt int64, owncheque bool) (string, error) {
	return c.Start(ctx, PathCashWithdrawal, url.Values{"amount": {amount(amt)}, "owncheque": {own(owncheque)}})
}

// TopUp starts a top-up of the customer's account by amount.
func (c *Client) TopUp(ctx context.Context, amt int64, owncheque bool) (string, error) {
	return c.Start(ctx, PathTopUp, url.Values{"amount": {amount(amt)}, "owncheque": {own(owncheque)}})
}

// Balance starts a balance inquiry; the final status carries the balance (Status.Extra).
func (c *Client) Balance(ctx context.Context) (string, error) {
	return c.Start(ctx, PathBalance, nil)
}

// ReadCard starts a card read; the final status carries the masked card (Status.Extra).
func (c *Client) ReadCard(ctx context.Context) (string, error) {
	return c.Start(ctx, PathReadCard, nil)
}

// EmergencyCancel starts the reversal of the last operation, processID, which the cash
// register could not complete.
func (c *Client) EmergencyCancel(ctx context.Context, processID string, owncheque bool) (string, error) {
	return c.Start(ctx, PathEmergencyCancel, url.Values{"processId": {processID}, "owncheque": {own(owncheque)}})
}

// Status asks for the state of process id.
func (c *Client) Status(ctx context.Context, id string) (Status, error) {
	return c.status(ctx, PathStatus, id)
}

// Actualize asks the terminal to find out the outcome of a process whose status is unknown
// (at most once per 10 s per process, by the API's rules) and returns the updated status.
func (c *Client) Actualize(ctx context.Context, id string) (Status, error) {
	return c.status(ctx, PathActualize, id)
}

func (c *Client) status(ctx context.Context, path, id string) (Status, error) {
	d, err := c.data(ctx, path, url.Values{"processId": {id}})
	if err != nil {
		return Status{}, err
	}
	s, err := DecodeStatus(d)
	if err != nil {
		return Status{}, fmt.Errorf("GET %s: %w", path, err)
	}
	return s, nil
}

// Cancel asks the terminal to abort process id while it runs. The process then ends (usually
// fail with ProcessCancelled); follow it to learn how.
func (c *Client) Cancel(ctx context.Context, id string) error {
	_, err := c.Call(ctx, PathCancel, url.Values{"processId": {id}})
	return err
}

// Report returns the day's report (short or full) as the terminal sends it.
func (c *Client) Report(ctx context.Context, short bool) (json.RawMessage, error) {
	return c.data(ctx, PathReport, url.Values{"short": {strconv.FormatBool(short)}})
}

// ReceiptCopy returns the receipt of transactionID, or of the last operation when it is
// empty.
func (c *Client) ReceiptCopy(ctx context.Context, transactionID string) (json.RawMessage, error) {
	var q url.Values
	if transactionID != "" {
		q = url.Values{"transactionId": {transactionID}}
	}
	return c.data(ctx, PathReceiptCopy, q)
}

// Echo checks the terminal's connection to the host.
func (c *Client) Echo(ctx context.Context) (json.RawMessage, error) {
	return c.data(ctx, PathEcho, nil)
}

// Register asks for access in protected mode under name; the terminal answers once an operator
// approves. The new access token is used from then on.
func (c *Client) Register(ctx context.Context, name string) (Tokens, error) {
	env, err := c.call(ctx, PathRegister, url.Values{"name": {name}}, false, max(c.timeout, RegisterTimeout))
	if err != nil {
		return Tokens{}, err
	}
	return c.adoptTokens(PathRegister, env.Data)
}

// Revoke exchanges refresh (from Register or the last Revoke) for a new token pair; the
// current access token may have expired. The old token stops working at once, and the new one
// is used from then on.
func (c *Client) Revoke(ctx context.Context, name, refresh string) (Tokens, error) {
	d, err := c.data(ctx, PathRevoke, url.Values{"name": {name}, "refreshToken": {refresh}})
	if err != nil {
		return Tokens{}, err
	}
	return c.adoptTokens(PathRevoke, d)
}

func (c *Client) adoptTokens(path string, d json.RawMessage) (Tokens, error) {
	t, err := decodeTokens(d)
	if err != nil {
		return Tokens{}, fmt.Errorf("GET %s: %w", path, err)
	}
	c.SetToken(t.AccessToken)
	return t, nil
}

// DeviceInfo returns the terminal's numbers; it is also the cheapest check of access.
func (c *Client) DeviceInfo(ctx context.Context) (DeviceInfo, error) {
	d, err := c.data(ctx, PathDeviceInfo, nil)
	if err != nil {
		return DeviceInfo{}, err
	}
	var di DeviceInfo
	if err := decodeObject(d, &di); err != nil {
		return DeviceInfo{}, fmt.Errorf("GET %s: %w: %w", PathDeviceInfo, ErrMalformed, err)
	}
	return di, nil
}

// Follow polls process id every interval (zero: DefaultPollInterval) until its status is
// final, and returns that status. onChange, when set, sees the first status and each later one
// whose status or subStatus differs. A poll that got no answer (TransportError) is retried:
// the terminal keeps the process for 24 hours, so a dropped connection loses nothing. An
// answer that is an error (process not found, authorization) ends Follow, as does ctx; the
// last status seen is returned with the error.
func (c *Client) Follow(ctx context.Context, id string, every time.Duration, onChange func(Status)) (Status, error) {
	if every <= 0 {
		every = DefaultPollInterval
	}
	var last Status
	seen := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("ecrclient: following process %s: %w", id, ctx.Err())
		case <-timer.C:
		}
		st, err := c.Status(ctx, id)
		var te *TransportError
		switch {
		case err == nil:
			changed := !seen || st.Status != last.Status || st.SubStatus != last.SubStatus
			seen, last = true, st
			if changed && onChange != nil {
				onChange(st)
			}
			if st.Final() {
				return st, nil
			}
		case ctx.Err() != nil:
			return last, fmt.Errorf("ecrclient: following process %s: %w", id, ctx.Err())
		case errors.As(err, &te):
			c.log.Warn("ecr status poll failed, retrying", "process", id, "err", err)
		default:
			return last, err
		}
		timer.Reset(every)
	}
}
