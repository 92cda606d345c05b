// Package diagclient is a technician's Go client of the diagnostics port's API
// (docs/diag.md): sign in with a technician token or the administrator password, read the
// status, events, logs and audit log, run actions and download the bundle. The command line
// (`posagent diag`) and the tests use it.
package diagclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag"
)

// MaxResponseSize bounds what is read of one JSON answer (the bundle is streamed, unbounded).
const MaxResponseSize = 8 << 20

// Credentials are one way to sign in: a technician token ("pat1.…") or the administrator
// password. Exactly one must be set.
type Credentials struct {
	Token    string
	Password string
}

// APIError is an answer that is not a success: the HTTP status and the API's error code
// (docs/diag.md: "unauthenticated", "forbidden", "locked_out", …).
type APIError struct {
	Status  int
	Code    string
	Message string
	// Until is when a lock-out ends (Code "locked_out").
	Until time.Time
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("diag: %s (HTTP %d)", e.Code, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if !e.Until.IsZero() {
		msg += " until " + e.Until.Local().Format(time.DateTime)
	}
	return msg
}

// ActionError is an action the terminal ran and that failed (a self-test with a failed
// device, a print without paper): an answer, not a transport or API error.
type ActionError struct {
	Action  string
	Message string
}

func (e *ActionError) Error() string { return e.Action + " failed: " + e.Message }

// ErrBaseURL is wrapped by every call's error when New was given an unusable base URL.
var ErrBaseURL = errors.New("diagclient: bad base URL")

// ErrCredentials is Login given no credential or both.
var ErrCredentials = errors.New("diagclient: give a token or a password, not both")

// Client talks to one terminal's diagnostics port. It keeps the session cookie and CSRF
// token of its last Login. Safe for concurrent use.
type Client struct {
	base    *url.URL
	baseErr error
	origin  string
	hc      *http.Client

	mu   sync.Mutex
	csrf string
}

// New returns a client of the port at baseURL ("https://192.168.1.20:8091"; without a scheme
// http is assumed). hc, when not nil, supplies the transport (TLS settings, timeout); the
// client uses a copy with its own cookie jar.
func New(baseURL string, hc *http.Client) *Client {
	c := &Client{}
	c.base, c.baseErr = parseBase(baseURL)
	if c.baseErr == nil {
		c.origin = c.base.Scheme + "://" + c.base.Host
	}
	var cp http.Client
	if hc != nil {
		cp = *hc
	}
	jar, _ := cookiejar.New(nil) // never fails without options
	cp.Jar = jar
	// The port never redirects; following one would carry the CSRF header elsewhere.
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &cp
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
	u.RawQuery, u.Fragment, u.RawPath, u.User = "", "", "", nil
	return u, nil
}

// do sends one request and decodes a JSON answer into out (when not nil). A non-2xx answer
// is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return fmt.Errorf("diagclient: %s %s: %w", method, path, err)
	}
	if len(b) > MaxResponseSize {
		return fmt.Errorf("diagclient: %s %s: answer larger than %d bytes", method, path, MaxResponseSize)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("diagclient: %s %s: answer: %w", method, path, err)
	}
	return nil
}

// send makes the request: POSTs carry JSON, the Origin and the CSRF token.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("diagclient: %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return nil, fmt.Errorf("diagclient: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("Origin", c.origin)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		c.mu.Lock()
		if c.csrf != "" {
			req.Header.Set(diag.HeaderCSRF, c.csrf)
		}
		c.mu.Unlock()
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The error names the path only: queries and bodies stay out of it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("diagclient: %s %s: %w", method, path, err)
	}
	return resp, nil
}

func apiError(resp *http.Response, b []byte) error {
	e := &APIError{Status: resp.StatusCode}
	var body struct {
		Error   string    `json:"error"`
		Message string    `json:"message"`
		Until   time.Time `json:"until"`
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" && json.Unmarshal(b, &body) == nil {
		e.Code, e.Message, e.Until = body.Error, body.Message, body.Until
	}
	if e.Code == "" {
		e.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
	}
	return e
}

// Login signs in and keeps the session for the following calls.
func (c *Client) Login(ctx context.Context, cr Credentials) (diag.SessionInfo, error) {
	var body any
	switch {
	case cr.Token != "" && cr.Password == "":
		body = map[string]string{"token": strings.TrimSpace(cr.Token)}
	case cr.Password != "" && cr.Token == "":
		body = map[string]string{"password": cr.Password}
	default:
		return diag.SessionInfo{}, ErrCredentials
	}
	var s diag.SessionInfo
	if err := c.do(ctx, http.MethodPost, "/api/login", body, &s); err != nil {
		return diag.SessionInfo{}, err
	}
	c.mu.Lock()
	c.csrf = s.CSRF
	c.mu.Unlock()
	return s, nil
}

// Logout ends the session.
func (c *Client) Logout(ctx context.Context) error {
	err := c.do(ctx, http.MethodPost, "/api/logout", nil, nil)
	c.mu.Lock()
	c.csrf = ""
	c.mu.Unlock()
	return err
}

// Session is the current session, as after Login.
func (c *Client) Session(ctx context.Context) (diag.SessionInfo, error) {
	var s diag.SessionInfo
	err := c.do(ctx, http.MethodGet, "/api/session", nil, &s)
	return s, err
}

// Status is the terminal's status now.
func (c *Client) Status(ctx context.Context) (diag.Status, error) {
	var s diag.Status
	err := c.do(ctx, http.MethodGet, "/api/status", nil, &s)
	return s, err
}

// History is the resource samples, oldest first.
func (c *Client) History(ctx context.Context) ([]diag.Sample, error) {
	var h []diag.Sample
	err := c.do(ctx, http.MethodGet, "/api/history", nil, &h)
	return h, err
}

// Events is the most recent events, newest last; n ≤ 0 is the server's default.
func (c *Client) Events(ctx context.Context, n int) ([]diag.EventLine, error) {
	var ev []diag.EventLine
	err := c.do(ctx, http.MethodGet, "/api/events"+count(n), nil, &ev)
	return ev, err
}

// Logs is the most recent lines of the agent's log, newest last.
func (c *Client) Logs(ctx context.Context, n int) ([]string, error) {
	var l []string
	err := c.do(ctx, http.MethodGet, "/api/logs"+count(n), nil, &l)
	return l, err
}

// Audit is the most recent audit entries, newest last.
func (c *Client) Audit(ctx context.Context, n int) ([]audit.Entry, error) {
	var es []audit.Entry
	err := c.do(ctx, http.MethodGet, "/api/audit"+count(n), nil, &es)
	return es, err
}

func count(n int) string {
	if n <= 0 {
		return ""
	}
	return "?n=" + strconv.Itoa(n)
}

// Act runs an action with params (nil for none) and decodes its result into result (when
// not nil), for a failed action too. ok is whether the action succeeded; a failed action is
// also an *ActionError, and a refusal (forbidden, unknown action, bad parameters) an
// *APIError.
func (c *Client) Act(ctx context.Context, action string, params any, result any) (ok bool, err error) {
	var r struct {
		Action string          `json:"action"`
		OK     bool            `json:"ok"`
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/actions/"+url.PathEscape(action), params, &r); err != nil {
		return false, err
	}
	if result != nil && len(r.Result) > 0 && !bytes.Equal(r.Result, []byte("null")) {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return r.OK, fmt.Errorf("diagclient: %s result: %w", action, err)
		}
	}
	if !r.OK {
		return false, &ActionError{Action: action, Message: r.Error}
	}
	return true, nil
}

// Bundle streams the diagnostics bundle (a .tar.gz) to w.
func (c *Client) Bundle(ctx context.Context, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/api/bundle", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return apiError(resp, b)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("diagclient: bundle: %w", err)
	}
	return nil
}
