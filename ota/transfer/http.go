package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HTTPSource fetches a file with HTTP Range requests. A server that ignores Range (200
// instead of 206) still works: the bytes before the offset are read and discarded, and
// counted as fetched again. HTTPS needs nothing more than a Client whose transport carries
// the TLS configuration.
type HTTPSource struct {
	URL    string
	Client *http.Client // nil: http.DefaultClient
}

// HTTPError is a status the server answered with instead of the bytes.
type HTTPError struct {
	StatusCode int
	URL        string // without query or credentials, which may carry secrets
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// Open requests the file from off on. 404, 410, 416 and the other client errors (except
// timeouts and rate limits) are permanent: asking again cannot fix them.
func (s HTTPSource) Open(ctx context.Context, off int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, Permanent(fmt.Errorf("transfer: url: %w", scrubURLError(err)))
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", scrubURLError(err))
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			resp.Body.Close()
			return nil, Permanent(fmt.Errorf("transfer: GET %s: asked for bytes from %d, got Content-Range %q", safeURL(s.URL), off, resp.Header.Get("Content-Range")))
		}
		return resp.Body, nil
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		if off == 0 {
			return resp.Body, nil
		}
		// Range ignored: the body starts at byte 0.
		n, err := io.CopyN(io.Discard, resp.Body, off)
		if err != nil {
			resp.Body.Close()
			if err == io.EOF {
				return nil, Permanent(fmt.Errorf("transfer: GET %s: body ended at %d, before offset %d", safeURL(s.URL), n, off))
			}
			return nil, fmt.Errorf("transfer: GET %s: skipping to %d: %w", safeURL(s.URL), off, err)
		}
		return &discarded{ReadCloser: resp.Body, n: n}, nil
	}
	resp.Body.Close()
	herr := &HTTPError{StatusCode: resp.StatusCode, URL: safeURL(s.URL)}
	if permanentStatus(resp.StatusCode) {
		return nil, Permanent(fmt.Errorf("transfer: %w", herr))
	}
	return nil, fmt.Errorf("transfer: %w", herr)
}

func permanentStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return code >= 400 && code < 500
}

// discarded is a body whose first n bytes were read and thrown away.
type discarded struct {
	io.ReadCloser
	n int64
}

func (d *discarded) Refetched() int64 { return d.n }

// contentRangeStart parses the first byte position of "bytes START-END/TOTAL".
func contentRangeStart(v string) (int64, error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, errors.New("not a byte range")
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, errors.New("no range")
	}
	return strconv.ParseInt(first, 10, 64)
}

// safeURL drops what may be a secret from a URL (user info, query: signed download links
// carry their token there).
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// scrubURLError replaces the URL inside a *url.Error by its safe form.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: safeURL(ue.URL), Err: ue.Err}
	}
	return err
}
