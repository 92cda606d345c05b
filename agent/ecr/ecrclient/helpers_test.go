package ecrclient

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// reply is one canned answer of the fake terminal. code dropConn closes the connection without
// an answer.
type reply struct {
	code int
	body string
}

const dropConn = -1

func ok(body string) reply { return reply{http.StatusOK, body} }

// request is what the fake terminal saw of one call.
type request struct {
	path  string
	query url.Values
	token string
	has   bool // the accessToken header was present
}

// fakeTerminal answers each path from its queue of replies; the last reply of a queue repeats.
// Unknown paths get the spec's 404 envelope.
type fakeTerminal struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	replies map[string][]reply
	reqs    []request
	hook    func(request) // called before answering, outside the lock
}

func newFake(t *testing.T) *fakeTerminal {
	f := &fakeTerminal{t: t, replies: map[string][]reply{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTerminal) on(path string, rs ...reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[path] = append(f.replies[path], rs...)
}

func (f *fakeTerminal) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func (f *fakeTerminal) count(path string) int {
	n := 0
	for _, r := range f.requests() {
		if r.path == path {
			n++
		}
	}
	return n
}

func (f *fakeTerminal) last() request {
	rs := f.requests()
	if len(rs) == 0 {
		f.t.Fatal("the terminal got no request")
	}
	return rs[len(rs)-1]
}

func (f *fakeTerminal) serve(w http.ResponseWriter, r *http.Request) {
	_, has := r.Header[http.CanonicalHeaderKey(HeaderToken)]
	req := request{path: r.URL.Path, query: r.URL.Query(), token: r.Header.Get(HeaderToken), has: has}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	hook := f.hook
	q := f.replies[r.URL.Path]
	var rep reply
	switch {
	case len(q) == 0:
		rep = reply{http.StatusNotFound, `{"errorText":"Invalid Url. Please, contact developers","statusCode":999}`}
	case len(q) == 1:
		rep = q[0]
	default:
		rep = q[0]
		f.replies[r.URL.Path] = q[1:]
	}
	f.mu.Unlock()
	if hook != nil {
		hook(req)
	}
	if rep.code == dropConn {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.code)
	_, _ = w.Write([]byte(rep.body))
}
