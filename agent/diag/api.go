package diag

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/diag/auth"
)

// SessionInfo is the answer of POST /api/login and GET /api/session.
type SessionInfo struct {
	Technician     string    `json:"technician"`
	Name           string    `json:"name,omitempty"`
	Role           string    `json:"role"`
	Method         string    `json:"method"`
	CSRF           string    `json:"csrf"`
	Expires        time.Time `json:"expires"`
	IdleTimeoutSec int       `json:"idleTimeoutSec"`
	// Actions are the actions this session's role may run, in the console's order.
	Actions []string `json:"actions"`
	// PollIntervalMs is how often the console refreshes the status.
	PollIntervalMs int64 `json:"pollIntervalMs"`
}

// ActionResult is the answer of POST /api/actions/{action}, whether the action succeeded or
// failed.
type ActionResult struct {
	Action string `json:"action"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
}

// AuditVerifyResult is the result of the audit.verify action.
type AuditVerifyResult struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	Count int    `json:"count"`
	// BrokenSeq and Reason name the first entry that does not verify.
	BrokenSeq uint64 `json:"brokenSeq,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// sessionHandler is an API handler behind a valid session.
type sessionHandler func(w http.ResponseWriter, r *http.Request, sess *auth.Session)

// withSession admits a request with a live session; a POST must also come from this origin
// and carry the session's CSRF token. Nothing runs before all of that holds.
func (s *Server) withSession(h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		post := r.Method == http.MethodPost
		if post && !sameOrigin(r) {
			writeError(w, crossOrigin)
			return
		}
		c, err := r.Cookie(CookieName)
		if err != nil || c.Value == "" {
			writeError(w, sessionError(auth.ErrNoSession))
			return
		}
		lookup := s.o.Auth.Session
		if background(r) {
			lookup = s.o.Auth.Peek
		}
		sess, err := lookup(c.Value)
		if err != nil {
			clearCookie(w, r)
			writeError(w, sessionError(err))
			return
		}
		if post {
			if err := s.o.Auth.CheckCSRF(sess, r.Header.Get(HeaderCSRF)); err != nil {
				writeError(w, &apiError{status: http.StatusForbidden, code: codeCSRF, msg: "missing or wrong " + HeaderCSRF})
				return
			}
		}
		h(w, r, sess)
	}
}

// background reports whether a request is one of the console's timed refreshes, which must
// not count as the technician's activity: otherwise a page left open polls its session alive
// forever and the server's idle timeout never ends it. Only reads qualify; a POST is always
// something a person did.
func background(r *http.Request) bool {
	return r.Method != http.MethodPost && r.Header.Get(HeaderBackground) == "1"
}

var crossOrigin = &apiError{status: http.StatusForbidden, code: codeCSRF, msg: "request from another origin"}

// sameOrigin reports whether a POST may come from this origin. Browsers send Origin (and
// Sec-Fetch-Site) on every POST, so a page elsewhere is recognised; a client without them
// (the CLI, curl) has no ambient cookie to abuse.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

func setCookie(w http.ResponseWriter, r *http.Request, id string) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// remoteHost is the client's address without its port, for the audit log.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, crossOrigin)
		return
	}
	b, aerr := readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	l, err := decodeLogin(b)
	if err != nil {
		writeError(w, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: err.Error()})
		return
	}
	var sess *auth.Session
	if l.Token != "" {
		sess, err = s.o.Auth.LoginToken(r.Context(), l.Token, remoteHost(r))
	} else {
		sess, err = s.o.Auth.LoginPassword(r.Context(), l.Password, remoteHost(r))
	}
	if err != nil {
		if e := loginError(err); e != nil {
			writeError(w, e)
			return
		}
		s.log.Error("diag login failed", "err", err)
		writeError(w, &apiError{status: http.StatusInternalServerError, code: codeInternal, msg: "sign-in failed; see the agent log"})
		return
	}
	s.log.Info("diag sign-in", "technician", sess.Technician, "role", sess.Role, "method", sess.Method, "remote", sess.Remote)
	setCookie(w, r, sess.ID)
	writeJSON(w, http.StatusOK, s.sessionInfo(sess))
}

func (s *Server) sessionInfo(sess *auth.Session) SessionInfo {
	p := s.o.Policy()
	idle := p.IdleTimeout
	if idle <= 0 {
		idle = auth.DefaultPolicy().IdleTimeout
	}
	return SessionInfo{
		Technician: sess.Technician, Name: sess.Name, Role: string(sess.Role), Method: sess.Method,
		CSRF: sess.CSRF, Expires: sess.Expires, IdleTimeoutSec: int(idle / time.Second),
		Actions: p.Actions(sess.Role, Actions), PollIntervalMs: s.o.PollInterval.Milliseconds(),
	}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, sess *auth.Session) {
	s.o.Auth.Logout(r.Context(), sess.ID)
	clearCookie(w, r)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) handleSession(w http.ResponseWriter, _ *http.Request, sess *auth.Session) {
	writeJSON(w, http.StatusOK, s.sessionInfo(sess))
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, _ *auth.Session) {
	writeJSON(w, http.StatusOK, s.o.Terminal.Status(r.Context()))
}

func (s *Server) handleHistory(w http.ResponseWriter, _ *http.Request, _ *auth.Session) {
	writeJSON(w, http.StatusOK, orEmpty(s.o.Terminal.History()))
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, _ *auth.Session) {
	n, aerr := count(r, defaultEvents, maxEvents)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(s.o.Terminal.Events(n)))
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request, _ *auth.Session) {
	n, aerr := count(r, defaultLogs, maxLogs)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(s.o.Terminal.Logs(n)))
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, _ *auth.Session) {
	n, aerr := count(r, defaultAudit, maxAudit)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	es, err := s.o.Audit.Recent(n)
	if err != nil {
		s.log.Error("diag: audit read failed", "err", err)
		writeError(w, &apiError{status: http.StatusInternalServerError, code: codeInternal, msg: "the audit log could not be read"})
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(es))
}

// count reads the n query parameter: absent → def; above most → most.
func count(r *http.Request, def, most int) (int, *apiError) {
	q := r.URL.Query().Get("n")
	if q == "" {
		return def, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 {
		return 0, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: "n must be a positive integer"}
	}
	return min(n, most), nil
}

func (s *Server) handleAction(w http.ResponseWriter, r *http.Request, sess *auth.Session) {
	action := strings.TrimPrefix(r.URL.Path, "/api/actions/")
	if !slices.Contains(Actions, action) {
		writeError(w, &apiError{status: http.StatusNotFound, code: codeUnknownAction, msg: "no such action"})
		return
	}
	b, aerr := readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	raw, params, err := decodeParams(b)
	if err != nil {
		writeError(w, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: err.Error()})
		return
	}
	if err := s.o.Auth.Authorize(r.Context(), sess, action); err != nil {
		writeError(w, s.forbidden(err))
		return
	}
	if action == ActBundle {
		writeError(w, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: "the bundle is a download: GET /api/bundle"})
		return
	}

	start := time.Now()
	var result any
	if action == ActAuditVerify {
		result, err = s.verifyAudit(r.Context())
	} else {
		result, err = s.o.Terminal.Act(WithActor(r.Context(), sess.Technician), action, raw, nil)
	}
	fields := auditFields(params)
	if fields == nil {
		fields = map[string]any{}
	}
	fields["ms"] = time.Since(start).Milliseconds()
	var pe *ParamError
	switch {
	case err == nil:
		s.record(r, sess, action, audit.OutcomeOK, fields)
		writeJSON(w, http.StatusOK, ActionResult{Action: action, OK: true, Result: result})
	case errors.Is(err, ErrUnknownAction):
		fields["error"] = "not available on this terminal"
		s.record(r, sess, action, audit.OutcomeFailed, fields)
		writeError(w, &apiError{status: http.StatusNotFound, code: codeUnknownAction, msg: "this terminal cannot do " + action})
	case errors.As(err, &pe):
		fields["error"] = clip(pe.Reason, maxAuditString)
		s.record(r, sess, action, audit.OutcomeFailed, fields)
		writeError(w, &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: pe.Reason})
	default:
		fields["error"] = clip(err.Error(), maxAuditString)
		s.record(r, sess, action, audit.OutcomeFailed, fields)
		writeJSON(w, http.StatusOK, ActionResult{Action: action, OK: false, Error: err.Error(), Result: result})
	}
}

// forbidden maps a refused Authorize (auth has audited it) to its answer.
func (s *Server) forbidden(err error) *apiError {
	if !errors.Is(err, auth.ErrForbidden) {
		s.log.Error("diag: authorisation failed", "err", err)
	}
	return &apiError{status: http.StatusForbidden, code: codeForbidden, msg: "your role may not do this"}
}

// verifyAudit is the audit.verify action: the server's own, since the log is its.
func (s *Server) verifyAudit(ctx context.Context) (any, error) {
	rep, err := s.o.Audit.Verify(ctx)
	res := AuditVerifyResult{First: rep.First, Last: rep.Last, Count: rep.Count}
	var ce *audit.ChainError
	if errors.As(err, &ce) {
		res.BrokenSeq, res.Reason = ce.Seq, ce.Reason
	}
	return res, err
}

// record writes an action's audit entry. It outlives the request's context: an action the
// technician abandoned half-way is still recorded.
func (s *Server) record(r *http.Request, sess *auth.Session, action, outcome string, fields map[string]any) {
	fields["action"] = action
	fields["remote"] = remoteHost(r)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	_, err := s.o.Audit.Append(ctx, audit.Event{Source: audit.SourceDiag, Actor: sess.Technician,
		Action: action, Outcome: outcome, Fields: fields})
	lvl := slog.LevelInfo
	if outcome != audit.OutcomeOK {
		lvl = slog.LevelWarn
	}
	s.log.Log(r.Context(), lvl, "diag action", "action", action, "technician", sess.Technician, "outcome", outcome)
	if err != nil {
		s.log.Error("diag: audit entry not written", "action", action, "err", err)
	}
}

func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request, sess *auth.Session) {
	if err := s.o.Auth.Authorize(r.Context(), sess, ActBundle); err != nil {
		writeError(w, s.forbidden(err))
		return
	}
	start := time.Now()
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", `attachment; filename="posagent-diag-`+start.UTC().Format("20060102-150405")+`.tar.gz"`)
	cw := &countWriter{w: w}
	err := s.o.Terminal.Bundle(r.Context(), cw)
	fields := map[string]any{"bytes": cw.n, "ms": time.Since(start).Milliseconds()}
	if err == nil {
		s.record(r, sess, ActBundle, audit.OutcomeOK, fields)
		return
	}
	fields["error"] = clip(err.Error(), maxAuditString)
	s.record(r, sess, ActBundle, audit.OutcomeFailed, fields)
	if cw.n == 0 {
		h.Del("Content-Disposition")
		writeError(w, &apiError{status: http.StatusInternalServerError, code: codeInternal, msg: "the bundle could not be made: " + err.Error()})
		return
	}
	// Part of the archive has gone: cut the connection so the download is seen to fail
	// rather than end in a truncated file that looks complete.
	panic(http.ErrAbortHandler)
}

// countWriter counts what the bundle has written.
type countWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// orEmpty makes a nil list an empty one: the console and clients read [] more easily than null.
func orEmpty[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
