package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Page is one browser tab. Selectors are CSS selectors; every action waits (up to
// ActionTimeout) for its element to be there, as a person would wait for the page.
//
// The pages under test forbid inline and eval'd script by their CSP, so nothing here
// injects script into the page's own world: waits are polled from Go with DevTools
// Runtime.evaluate, which the page's CSP does not govern.
type Page struct {
	ctx   context.Context
	close func()
}

// Context is the tab's chromedp context, for chromedp actions the helpers do not cover.
func (p *Page) Context() context.Context { return p.ctx }

// Close closes the tab.
func (p *Page) Close() { p.close() }

func (p *Page) do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

func run[T any](p *Page, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, ActionTimeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// Resize sets the viewport (device metrics), e.g. Phone or Desktop.
func (p *Page) Resize(s Size) error {
	if err := p.do(chromedp.EmulateViewport(int64(s.Width), int64(s.Height))); err != nil {
		return fmt.Errorf("browsertest: resize to %dx%d: %w", s.Width, s.Height, err)
	}
	return nil
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(url string) error {
	if err := p.do(chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("browsertest: navigate to %s: %w", url, err)
	}
	return nil
}

// Click clicks the first element matching sel once it is visible.
func (p *Page) Click(sel string) error {
	if err := p.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		return fmt.Errorf("browsertest: click %s: %w", sel, err)
	}
	return nil
}

// Type focuses the first element matching sel, clears it and types text into it with key
// events, as a person would (so the page's input listeners run).
func (p *Page) Type(sel, text string) error {
	if err := p.do(
		chromedp.Clear(chromedp.CSS(sel), chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible),
	); err != nil {
		return fmt.Errorf("browsertest: type into %s: %w", sel, err)
	}
	return nil
}

// SetValue sets the value of a form field directly (for long texts such as tokens, where
// typing key by key is slow) and fires its input and change events.
func (p *Page) SetValue(sel, value string) error {
	if err := p.WaitVisible(sel); err != nil {
		return err
	}
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.focus(); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true}));
		e.dispatchEvent(new Event('change', {bubbles: true})); return true })()`, jsString(sel), jsString(value))
	if err := p.Eval(js, nil); err != nil {
		return fmt.Errorf("browsertest: set value of %s: %w", sel, err)
	}
	return nil
}

// WaitVisible waits until an element matching sel is visible.
func (p *Page) WaitVisible(sel string) error {
	if err := p.do(chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		return fmt.Errorf("browsertest: wait for %s visible: %w", sel, err)
	}
	return nil
}

// WaitNotVisible waits until the first element matching sel is hidden.
func (p *Page) WaitNotVisible(sel string) error {
	if err := p.do(chromedp.WaitNotVisible(chromedp.CSS(sel))); err != nil {
		return fmt.Errorf("browsertest: wait for %s hidden: %w", sel, err)
	}
	return nil
}

// Text is the rendered text (innerText) of the first element matching sel.
func (p *Page) Text(sel string) (string, error) {
	var s string
	err := p.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : null })()`, jsString(sel)), &s)
	if err != nil {
		return "", fmt.Errorf("browsertest: text of %s: %w", sel, err)
	}
	return s, nil
}

// Attr is the attribute name of the first element matching sel; ok is false when the element
// or the attribute is absent.
func (p *Page) Attr(sel, name string) (value string, ok bool, err error) {
	var v *string
	err = p.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.getAttribute(%s) : null })()`,
		jsString(sel), jsString(name)), &v)
	if err != nil {
		return "", false, fmt.Errorf("browsertest: attribute %s of %s: %w", name, sel, err)
	}
	if v == nil {
		return "", false, nil
	}
	return *v, true, nil
}

// Eval evaluates a JavaScript expression in the page and decodes its JSON value into out
// (nil: ignore it). A promise is awaited.
func (p *Page) Eval(expr string, out any) error {
	raw, err := run(p, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("browsertest: eval: %w", err)
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("browsertest: eval result %.200s: %w", raw, err)
	}
	return nil
}

// WaitFor evaluates the expression every 50 ms until it is truthy, then decodes that value
// into out (nil: ignore it). It gives up after ActionTimeout (or when the page's context
// ends) with an error wrapping ErrTimeout and naming what.
func (p *Page) WaitFor(what, expr string, out any) error {
	return p.WaitForWithin(ActionTimeout, what, expr, out)
}

// WaitForWithin is WaitFor with a longer or shorter limit than ActionTimeout, for
// conditions that legitimately take long (a download on a slowed link).
func (p *Page) WaitForWithin(limit time.Duration, what, expr string, out any) error {
	ctx, cancel := context.WithTimeout(p.ctx, limit)
	defer cancel()
	// Errors while polling (a navigation replacing the document) are retried; the last
	// one is reported if the condition never holds.
	wrapped := fmt.Sprintf(`(async () => { const v = await (%s); return v ? {ok: true, v: v} : {ok: false} })()`, expr)
	var last error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](wrapped, chromedp.EvalAwaitPromise))
		if err == nil {
			var res struct {
				OK bool            `json:"ok"`
				V  json.RawMessage `json:"v"`
			}
			if err = json.Unmarshal(raw, &res); err == nil && res.OK {
				if out == nil {
					return nil
				}
				if err := json.Unmarshal(res.V, out); err != nil {
					return fmt.Errorf("browsertest: wait for %s: result %.200s: %w", what, res.V, err)
				}
				return nil
			}
		}
		if err != nil && ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if p.ctx.Err() != nil {
				return fmt.Errorf("browsertest: wait for %s: %w", what, p.ctx.Err())
			}
			if last != nil {
				return fmt.Errorf("browsertest: wait for %s: %w (last error: %v)", what, ErrTimeout, last)
			}
			return fmt.Errorf("browsertest: wait for %s: %w", what, ErrTimeout)
		case <-tick.C:
		}
	}
}

// Screenshot captures the whole page as PNG into the artefacts directory (see ArtefactsDir)
// as name.png and returns the file's path; it fails tb when it cannot. It scrolls the page to
// the top first: a full-page capture of a scrolled page draws sticky headers mid-page.
func (p *Page) Screenshot(tb testing.TB, name string) string {
	tb.Helper()
	if err := p.Eval(`window.scrollTo(0, 0)`, nil); err != nil {
		tb.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	png, err := run(p, chromedp.FullScreenshot(100)) // quality 100 = PNG
	if err != nil {
		tb.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	dir, err := ArtefactsDir()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, safeName(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.Fatalf("browsertest: screenshot: %v", err)
	}
	tb.Logf("screenshot: %s", path)
	return path
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(name string) string {
	s := unsafeChars.ReplaceAllString(name, "_")
	if s == "" || s == "." || s == ".." {
		return "screenshot"
	}
	return s
}

// jsString quotes s as a JavaScript string literal (JSON is a subset of JS here: the quoted
// form has no raw U+2028/U+2029 since encoding/json escapes them).
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always marshals
	}
	return string(b)
}
