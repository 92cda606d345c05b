package browsertest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// Attacker is a web site on another origin AND another site than the pages under test, which
// are served on 127.0.0.1: it listens on loopback but is browsed as http://localhost:PORT.
// Chromium resolves localhost to loopback by itself and treats it as a different site from
// 127.0.0.1, so SameSite cookies, CORS, frame-ancestors and Origin checks all apply as they
// would to an evil page on the internet.
type Attacker struct {
	URL string // http://localhost:PORT

	mu    sync.Mutex
	pages map[string]string // path → HTML
}

// NewAttacker starts an attacker site for tb's lifetime.
func NewAttacker(tb testing.TB) *Attacker {
	tb.Helper()
	a := &Attacker{pages: make(map[string]string)}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	tb.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	a.URL = "http://localhost:" + port
	return a
}

func (a *Attacker) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	body, ok := a.pages[r.URL.Path]
	a.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(body))
}

// Serve publishes an HTML page at path and returns its URL.
func (a *Attacker) Serve(path, htmlText string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pages[path] = htmlText
	return a.URL + path
}

// FrameResult is what a page on the attacker's site saw when it framed a target URL.
type FrameResult struct {
	Loaded bool   // the target's document is in the frame (framing NOT blocked)
	URL    string // the frame's committed URL (an error page's when blocked)
	Reason string // why Loaded is false, from the frame tree
}

// Frame opens, in page p, an attacker page that embeds target in an iframe, waits for the
// frame's load event, and reports whether the target's own document was committed in the
// frame. A page protected by X-Frame-Options: DENY or CSP frame-ancestors 'none' ends up as
// Chromium's error page (chrome-error://…) with the target as its unreachable URL.
//
// With site isolation (on, as in any user's browser) the cross-site frame lives in its own
// renderer: it is not in the page's frame tree but a target of type "iframe" whose parent is
// the page, so the helper attaches to that target to read what it committed.
func (a *Attacker) Frame(p *Page, target string) (FrameResult, error) {
	url := a.Serve("/frame", `<!doctype html><title>framer</title>
<iframe id="victim" width="400" height="300" src="`+html.EscapeString(target)+`"></iframe>
<script>document.getElementById('victim').addEventListener('load', () => { window.framed = true })</script>`)
	if err := p.Navigate(url); err != nil {
		return FrameResult{}, err
	}
	if err := p.WaitFor("the iframe's load event", `window.framed === true`, nil); err != nil {
		return FrameResult{}, err
	}
	f, err := p.childFrame()
	if err != nil {
		return FrameResult{}, err
	}
	res := FrameResult{URL: f.URL}
	switch {
	case f.UnreachableURL != "":
		res.Reason = "error page for " + f.UnreachableURL
	case strings.HasPrefix(f.URL, "chrome-error:"):
		res.Reason = "error page"
	case f.URL != target:
		res.Reason = "frame shows " + f.URL
	default:
		res.Loaded = true
	}
	return res, nil
}

func frameTree(ctx context.Context, t *chromedp.Target) (page.GetFrameTreeResult, error) {
	return cdp.Call(ctx, t, page.GetFrameTree, cdp.Empty{})
}

// childFrame is the one frame embedded in p's document, same-site or not.
func (p *Page) childFrame() (*cdp.Frame, error) {
	tree, err := run(p, frameTree)
	if err != nil {
		return nil, fmt.Errorf("browsertest: frame tree: %w", err)
	}
	if tree.FrameTree != nil && len(tree.FrameTree.ChildFrames) == 1 && tree.FrameTree.ChildFrames[0].Frame != nil {
		return tree.FrameTree.ChildFrames[0].Frame, nil // same process
	}
	c := chromedp.FromContext(p.ctx)
	if c == nil || c.Target == nil {
		return nil, errors.New("browsertest: the page has no target")
	}
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	infos, err := chromedp.Targets(ctx)
	if err != nil {
		return nil, fmt.Errorf("browsertest: targets: %w", err)
	}
	var frames []*target.Info
	for _, info := range infos {
		if info.Type == "iframe" && info.ParentID == c.Target.TargetID {
			frames = append(frames, info)
		}
	}
	if len(frames) != 1 {
		return nil, fmt.Errorf("browsertest: the framing page has %d out-of-process frames, want 1", len(frames))
	}
	// Detach, not close, on cancel: closing the frame's target would tear the page down.
	fctx, fcancel := chromedp.NewContext(ctx, chromedp.WithTargetID(frames[0].TargetID), chromedp.WithDetachOnCancel())
	defer fcancel()
	ftree, err := chromedp.Run(fctx, frameTree)
	if err != nil {
		return nil, fmt.Errorf("browsertest: frame tree of the embedded frame: %w", err)
	}
	if ftree.FrameTree == nil || ftree.FrameTree.Frame == nil {
		return nil, errors.New("browsertest: the embedded frame has no frame")
	}
	return ftree.FrameTree.Frame, nil
}

// PostResult is the answer the browser received to a cross-site POST.
type PostResult struct {
	Status  int    // HTTP status as the network saw it (the page itself only sees an opaque answer)
	Body    string // the answer's body, when the browser kept it
	Blocked string // why the browser withheld the answer from the page, if it did (e.g. CORP)
}

// netEvent is the part of the network log Post follows, from several event types.
type netEvent struct {
	id      network.RequestID
	url     string // requestWillBeSent only
	status  int    // responseReceived or its extra info
	done    bool   // loadingFinished: the body is kept
	failed  bool   // loadingFailed
	blocked string
}

// forward sends each event of seq, converted, to out until ctx ends.
func forward[E any](ctx context.Context, seq iter.Seq2[E, error], conv func(E) netEvent, out chan<- netEvent) {
	for ev, err := range seq {
		if err != nil {
			return
		}
		select {
		case out <- conv(ev):
		case <-ctx.Done():
			return
		}
	}
}

// Post makes the attacker's page (opened in p) send a POST to target with fetch in no-cors
// mode and the browser's cookies (credentials: "include") — what a malicious page can do
// without any cooperation of the target. contentType must be one a no-cors request may use
// (text/plain, application/x-www-form-urlencoded, multipart/form-data). The status and body
// are read from the browser's network log, since the page itself gets an opaque answer (or
// none, when the target's Cross-Origin-Resource-Policy withholds it).
func (a *Attacker) Post(p *Page, target, contentType, body string) (PostResult, error) {
	if err := p.Navigate(a.Serve("/post", `<!doctype html><title>poster</title>`)); err != nil {
		return PostResult{}, err
	}
	if err := p.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{})
		return err
	})); err != nil {
		return PostResult{}, fmt.Errorf("browsertest: network log: %w", err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	evs := make(chan netEvent, 64)
	// Subscriptions start here, before the request, so no event is missed.
	go forward(ctx, chromedp.Events(ctx, network.RequestWillBeSent), func(e network.EventRequestWillBeSent) netEvent {
		ev := netEvent{id: e.RequestID}
		if e.Request != nil && e.Request.Method == http.MethodPost {
			ev.url = e.Request.URL
		}
		return ev
	}, evs)
	go forward(ctx, chromedp.Events(ctx, network.ResponseReceived), func(e network.EventResponseReceived) netEvent {
		ev := netEvent{id: e.RequestID}
		if e.Response != nil {
			ev.status = int(e.Response.Status)
		}
		return ev
	}, evs)
	go forward(ctx, chromedp.Events(ctx, network.ResponseReceivedExtraInfo), func(e network.EventResponseReceivedExtraInfo) netEvent {
		return netEvent{id: e.RequestID, status: int(e.StatusCode)}
	}, evs)
	go forward(ctx, chromedp.Events(ctx, network.LoadingFinished), func(e network.EventLoadingFinished) netEvent {
		return netEvent{id: e.RequestID, done: true}
	}, evs)
	go forward(ctx, chromedp.Events(ctx, network.LoadingFailed), func(e network.EventLoadingFailed) netEvent {
		return netEvent{id: e.RequestID, failed: true, blocked: string(e.BlockedReason)}
	}, evs)

	js := fmt.Sprintf(`fetch(%s, {method: 'POST', mode: 'no-cors', credentials: 'include',
		headers: {'Content-Type': %s}, body: %s}).then(() => 'sent', e => 'error: ' + e)`,
		jsString(target), jsString(contentType), jsString(body))
	var outcome string
	if err := p.Eval(js, &outcome); err != nil {
		return PostResult{}, err
	}

	// Events of other requests (the page's favicon…) may come first; ids of ours only.
	var res PostResult
	var id network.RequestID
	seen := map[network.RequestID][]netEvent{}
	ended := false
	for !(ended && res.Status != 0) {
		var ev netEvent
		select {
		case ev = <-evs:
		case <-ctx.Done():
			if res.Status != 0 {
				return res, nil
			}
			return res, fmt.Errorf("browsertest: cross-site POST to %s (%s): no answer in the network log: %w", target, outcome, ErrTimeout)
		}
		if id == "" {
			if ev.url != target {
				seen[ev.id] = append(seen[ev.id], ev)
				continue
			}
			id = ev.id
			for _, old := range seen[id] { // events that arrived before the request's own
				res, ended = applyNetEvent(res, ended, old)
			}
			continue
		}
		if ev.id == id {
			res, ended = applyNetEvent(res, ended, ev)
		}
	}
	// The body of an opaque answer is usually discarded; read it when the browser kept it,
	// since it names the server's reason.
	b, err := run(p, func(ctx context.Context, t *chromedp.Target) (network.GetResponseBodyResult, error) {
		return cdp.Call(ctx, t, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
	})
	if err == nil {
		res.Body = string(b.Body)
	}
	return res, nil
}

func applyNetEvent(res PostResult, ended bool, ev netEvent) (PostResult, bool) {
	if ev.status != 0 {
		res.Status = ev.status
	}
	if ev.blocked != "" {
		res.Blocked = ev.blocked
	}
	return res, ended || ev.done || ev.failed
}
