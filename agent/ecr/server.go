// Package ecr is the cash-register API: HTTP(S) on the shop's LAN, compatible with the Smart
// POS /v2 API (seed 003) — same paths, parameters, envelope, statuses, sub-statuses, error
// codes and texts — plus the integrated-till operations of seed 002 in the same style.
//
// A cash register starts an operation and gets a processId; it then polls /v2/status. Every
// process is kept for 24 hours in the agent's store, committed before the cash register hears
// of it, and resolved from the payment engine's journal after a restart. Only one operation
// runs at a time (107). A successful card operation the cash register does not collect in
// time is reversed by the terminal (seed 002 §2.4, emergency cancel), and so is one the cash
// register aborts with /v2/cancel after the host approved it. See docs/ecr-api.md.
package ecr

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
)

// Options configure a Server.
type Options struct {
	DB       *store.DB
	Commit   *store.Committer
	Terminal Terminal
	Access   Access      // protected mode; nil: the terminal cannot run protected mode
	Exchange ExchangeLog // nil: not logged
	Logger   *slog.Logger
	Now      func() time.Time
	// Event reports what the TMS should hear of (an abandoned operation reversed, …).
	Event func(ctx context.Context, kind string, body map[string]any)
	// QRPoll is how often a QR order is asked about (default 1 s). (The customer's 180 s to
	// present a card is the checkout's CardWait, set by the agent.)
	QRPoll time.Duration
	// ActualizeEvery is the least interval between two /v2/actualize of a process (10 s).
	ActualizeEvery time.Duration
	// Admit, if set, may refuse to start an operation (the terminal is installing an update):
	// the cash register gets 107 and tries again later.
	Admit func() error
}

// Server serves the API. ServeHTTP answers; Run does the background work (recovery after a
// restart, abandoned operations, retention).
type Server struct {
	o    Options
	reg  *registry
	log  *slog.Logger
	term Terminal

	mu  sync.Mutex
	cur *running // the operation in progress
	wg  sync.WaitGroup
	// watch wakes the abandonment watcher when a process succeeds or is collected.
	watch chan struct{}
	// recovered is closed once Run has resolved what a restart interrupted.
	recovered chan struct{}
}

// Recovered is closed once the processes a restart interrupted are resolved: the agent
// listens only then, so a cash register never sees an interrupted process as still waiting.
func (s *Server) Recovered() <-chan struct{} { return s.recovered }

// Busy reports whether a cash-register operation is in progress.
func (s *Server) Busy() bool { return s.reg.activeID() != "" }

// running is the operation in progress: how to stop it.
type running struct {
	id       string
	cancel   context.CancelFunc
	atHost   bool // past the point where stopping needs a reversal
	abortReq bool
}

// New opens the process registry.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.QRPoll <= 0 {
		o.QRPoll = time.Second
	}
	if o.ActualizeEvery <= 0 {
		o.ActualizeEvery = 10 * time.Second
	}
	if o.Event == nil {
		o.Event = func(context.Context, string, map[string]any) {}
	}
	reg, err := openRegistry(o.DB, o.Commit, o.Logger, o.Now)
	if err != nil {
		return nil, err
	}
	if err := reg.openSales(); err != nil {
		return nil, err
	}
	reg.admit = o.Admit
	return &Server{o: o, reg: reg, log: o.Logger, term: o.Terminal, watch: make(chan struct{}, 1),
		recovered: make(chan struct{})}, nil
}

// answer is what a handler produced.
type answer struct {
	data any
	err  *Error
	pid  string
}

// ServeHTTP answers one call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.o.Now()
	var a answer
	name := ""
	doc := s.term.Config()
	switch {
	case !s.allowedRemote(doc, r.RemoteAddr):
		a.err = errAuthFailed
	case doc.ECR.ProtectedMode && r.TLS == nil:
		a.err = errAuthFailed // plain HTTP in protected mode (the listener normally refuses it first)
	case r.Method != http.MethodGet:
		a.err = errInvalidURL
	default:
		req, perr := ParseRequest(r.URL.Path, r.URL.RawQuery, maxWhole(doc))
		if perr == errInvalidURL {
			a.err = perr
			break
		}
		ep := endpoints[req.Endpoint]
		if doc.ECR.ProtectedMode && !ep.open {
			var aerr *Error
			name, aerr = s.authenticate(r.Header.Get("accessToken"), req.Endpoint)
			if aerr != nil {
				a.err = aerr
				break
			}
		}
		if perr != nil {
			a.err = perr
			break
		}
		a = s.dispatch(r.Context(), req, name, r.RemoteAddr, r.Header.Get("accessToken"))
	}
	env := envelope{StatusCode: CodeOK, Data: a.data}
	code := http.StatusOK
	if a.err != nil {
		env, code = a.err.envelope(), a.err.HTTP
	}
	_, body := encode(env)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	if s.o.Exchange != nil {
		q := r.URL.Query()
		if len(r.URL.RawQuery) > MaxQuery {
			q = nil // not worth keeping
		}
		s.o.Exchange.Record(ecrlog.Entry{Time: start, Remote: r.RemoteAddr, ECR: name, Method: r.Method, Path: r.URL.Path,
			Query: q, HTTP: code, Code: env.StatusCode, Response: body, Duration: s.o.Now().Sub(start), ProcessID: a.pid})
	}
	if a.err != nil && a.err.Code == CodeStartFailed {
		s.log.Warn("ecr: operation not started", "path", r.URL.Path, "reason", a.err.Message)
	}
}

// authenticate checks the accessToken of protected mode. revoke takes an expired token (it
// is how a cash register renews one), so its check happens in the revoke itself.
func (s *Server) authenticate(token, endpoint string) (string, *Error) {
	if s.o.Access == nil {
		return "", errAuthFailed
	}
	if endpoint == "revoke" {
		if token == "" {
			return "", errAuthFailed
		}
		return "", nil
	}
	name, err := s.o.Access.Check(token)
	switch {
	case err == nil:
		return name, nil
	case errors.Is(err, access.ErrExpired):
		return "", errTokenExpired
	case errors.Is(err, access.ErrSuperseded):
		return "", errSessionExpired
	}
	return "", errAuthFailed
}

// allowedRemote applies ecr.allowedNetworks.
func (s *Server) allowedRemote(doc *termconfig.Document, remote string) bool {
	if len(doc.ECR.AllowedNetworks) == 0 {
		return true
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, n := range doc.ECR.AllowedNetworks {
		if p, err := netip.ParsePrefix(n); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}

// dispatch runs an endpoint.
func (s *Server) dispatch(ctx context.Context, req Request, name, remote, token string) answer {
	switch req.Endpoint {
	case "status":
		return s.status(req.ProcessID)
	case "actualize":
		return s.actualize(ctx, req.ProcessID)
	case "deviceinfo":
		return answer{data: s.term.DeviceInfo()}
	case "register":
		return s.register(ctx, req.Name, remote)
	case "revoke":
		return s.revoke(ctx, req.Name, req.RefreshToken, token)
	case "cancel":
		return s.cancel(req.ProcessID)
	case "report":
		return s.report(ctx, req)
	case "receiptcopy":
		return s.receiptCopy(ctx, req)
	case "echo":
		return s.echo(ctx)
	}
	return s.start(ctx, req, name, remote)
}

// status answers /v2/status. A final status seen by the cash register counts as collected.
func (s *Server) status(id string) answer {
	p, err := s.reg.get(id)
	if err != nil {
		return answer{err: errInternal, pid: id}
	}
	if p == nil {
		return answer{err: errProcessNotFound, pid: id}
	}
	if p.Final() && !p.Collected {
		s.collected(p)
	}
	return answer{data: p.view(), pid: id}
}

// collected marks a final process as seen; the mark is committed in the background (a poll
// must not wait for an fsync), and a lost mark only means the watcher asks again.
func (s *Server) collected(p *Process) {
	p.Collected = true
	s.reg.publish(p)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		cur, err := s.reg.get(p.ID)
		if err != nil || cur == nil {
			return
		}
		cur.Collected = true
		if err := s.reg.save(context.Background(), cur); err != nil {
			s.log.Warn("ecr: collected mark not saved", "process", p.ID, "err", err)
		}
	}()
}

func (s *Server) register(ctx context.Context, name, remote string) answer {
	if s.o.Access == nil || !s.term.Config().ECR.ProtectedMode {
		return answer{err: serviceError("Register Error. Protected mode is off")}
	}
	t, err := s.o.Access.Register(ctx, name, remote)
	switch {
	case err == nil:
		return answer{data: tokens(t)}
	case errors.Is(err, access.ErrPending):
		return answer{err: serviceError("Register Error. Last register request not completed")}
	case errors.Is(err, access.ErrDenied):
		return answer{err: serviceError("Register Error. Request declined")}
	case errors.Is(err, access.ErrTimeout):
		return answer{err: serviceError("Register Error. Request timed out")}
	case errors.Is(err, access.ErrBadName):
		return answer{err: unvalidated("name", "Must be 1..64 printable characters")}
	}
	s.log.Warn("ecr: register failed", "err", err)
	return answer{err: serviceError("Register Error. " + firstUpper(err.Error()))}
}

func (s *Server) revoke(ctx context.Context, name, refresh, token string) answer {
	if s.o.Access == nil {
		return answer{err: errAuthFailed}
	}
	t, err := s.o.Access.Revoke(ctx, name, refresh, token)
	switch {
	case err == nil:
		return answer{data: tokens(t)}
	case errors.Is(err, access.ErrEmptyRefresh):
		return answer{err: unvalidated("refreshToken", "It's empty")}
	case errors.Is(err, access.ErrWrongRefresh):
		return answer{err: serviceError("Revoke Error. Wrong refresh token")}
	case errors.Is(err, access.ErrUnknownName):
		return answer{err: serviceError("Revoke Error. Unknown name")}
	case errors.Is(err, access.ErrSuperseded):
		return answer{err: errSessionExpired}
	case errors.Is(err, access.ErrUnknownToken), errors.Is(err, access.ErrNoToken):
		return answer{err: errAuthFailed}
	}
	s.log.Warn("ecr: revoke failed", "err", err)
	return answer{err: serviceError("Revoke Error. " + firstUpper(err.Error()))}
}

type tokenData struct {
	AccessToken    string `json:"accessToken"`
	ExpirationDate string `json:"expirationDate"`
	RefreshToken   string `json:"refreshToken"`
}

func tokens(t access.Tokens) tokenData {
	return tokenData{AccessToken: t.Access, RefreshToken: t.Refresh, ExpirationDate: access.FormatExpiry(t.Expires)}
}

func firstUpper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// maxWhole is the largest amount in whole units field 4 (12 digits of minor units) carries.
func maxWhole(doc *termconfig.Document) int64 {
	const maxMinor = 999_999_999_999
	return maxMinor / pow10(exponent(doc))
}

func exponent(doc *termconfig.Document) int {
	if c, ok := doc.DefaultCurrency(); ok {
		return int(c.Exponent)
	}
	return 2
}

func pow10(n int) int64 { return int64(math.Pow10(n)) }

// minor converts whole units to the engine's minor units.
func minor(doc *termconfig.Document, whole int64) int64 { return whole * pow10(exponent(doc)) }
