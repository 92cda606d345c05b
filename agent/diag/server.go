// Package diag is the technician diagnostics port: a JSON API and an embedded web console
// (docs/diag.md) that show the terminal's state and run device tests and service actions for a
// signed-in technician. Authentication, sessions and the policy live in agent/diag/auth; every
// login and action is written to the audit log (agent/audit); the running agent is reached
// through the Terminal interface.
package diag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag/auth"
)

// AuditLog is what the server needs of the audit log (audit.Log has it).
type AuditLog interface {
	Append(ctx context.Context, e audit.Event) (audit.Entry, error)
	Recent(n int) ([]audit.Entry, error)
	Verify(ctx context.Context) (audit.Report, error)
}

// Options configure a Server. Terminal, Auth and Audit are required.
type Options struct {
	Terminal Terminal
	Auth     *auth.Store
	Audit    AuditLog
	// Policy is read on every login and session answer (the list of allowed actions); nil
	// means the default policy.
	Policy func() auth.Policy
	Logger *slog.Logger
	// PollInterval is the console's status refresh; default 1 s.
	PollInterval time.Duration
}

// DefaultPollInterval is the console's status refresh when Options.PollInterval is zero.
const DefaultPollInterval = time.Second

// CookieName is the session cookie.
const CookieName = "posdiag"

// HeaderCSRF carries the session's CSRF token on every POST but login.
const HeaderCSRF = "X-CSRF-Token"

// HeaderBackground, set to "1" on a GET, marks a refresh the console made on its own timer:
// the session is checked but not marked seen, so the idle timeout still runs.
const HeaderBackground = "X-Diag-Background"

// MaxBody bounds every request body.
const MaxBody = 16 << 10

// Read bounds of the list endpoints: the default when n is absent, and the most served.
const (
	defaultEvents, maxEvents = 100, 200
	defaultLogs, maxLogs     = 200, 500
	defaultAudit, maxAudit   = 100, 1000
)

// Server is the diagnostics port. It holds no state of its own beyond its options: sessions
// are the auth.Store's, so several listeners (loopback and LAN) may share one Server.
type Server struct {
	o       Options
	log     *slog.Logger
	handler http.Handler
}

// New makes a server; it does not listen (see Serve).
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Policy == nil {
		o.Policy = auth.DefaultPolicy
	}
	s := &Server{o: o, log: o.Logger}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// Handler serves the console and the API (for tests, or a caller's own http.Server).
func (s *Server) Handler() http.Handler { return s.handler }

// shutdownGrace bounds how long Serve waits for requests in flight once ctx ends. Slow
// actions see their request's context cancelled (the server's base context is ctx), so
// they end promptly; the grace covers writing their answer.
const shutdownGrace = 5 * time.Second

// Serve answers on ln (a TLS listener gives HTTPS, with Secure cookies and HSTS) until ctx
// ends, then shuts down gracefully and returns nil. Another failure to serve is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("diag: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Handlers still running past the grace: cut their connections.
		_ = srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("diag: serve: %w", err)
	}
	return nil
}

// csp lets the page load only its own script, style and images: no inline code, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// setHeaders puts the security headers on every answer, errors and static files included.
func setHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// route is one path's handlers by method.
type route map[string]http.HandlerFunc

// serveHTTP routes by hand rather than with http.ServeMux so that unknown paths and methods
// get the API's JSON errors and every answer passes through setHeaders.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	setHeaders(w, r)
	p := r.URL.Path
	var rt route
	switch {
	case p == "/" || p == "/index.html":
		rt = route{http.MethodGet: s.serveIndex}
	case strings.HasPrefix(p, "/static/"):
		rt = route{http.MethodGet: s.serveStatic}
	case p == "/api/login":
		rt = route{http.MethodPost: s.handleLogin}
	case p == "/api/logout":
		rt = route{http.MethodPost: s.withSession(s.handleLogout)}
	case p == "/api/session":
		rt = route{http.MethodGet: s.withSession(s.handleSession)}
	case p == "/api/status":
		rt = route{http.MethodGet: s.withSession(s.handleStatus)}
	case p == "/api/history":
		rt = route{http.MethodGet: s.withSession(s.handleHistory)}
	case p == "/api/events":
		rt = route{http.MethodGet: s.withSession(s.handleEvents)}
	case p == "/api/logs":
		rt = route{http.MethodGet: s.withSession(s.handleLogs)}
	case p == "/api/audit":
		rt = route{http.MethodGet: s.withSession(s.handleAudit)}
	case p == "/api/bundle":
		rt = route{http.MethodGet: s.withSession(s.handleBundle)}
	case strings.HasPrefix(p, "/api/actions/"):
		rt = route{http.MethodPost: s.withSession(s.handleAction)}
	default:
		writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, msg: "no such page"})
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	h, ok := rt[method]
	if !ok {
		for m := range rt {
			w.Header().Set("Allow", m)
		}
		writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
			msg: r.Method + " not allowed here"})
		return
	}
	h(w, r)
}
