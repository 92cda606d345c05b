package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/ota/manifest"
)

// testData is size deterministic pseudo-random bytes.
func testData(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func digest(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

var quickRetry = backoff.Policy{Base: time.Millisecond, Cap: 5 * time.Millisecond}

func newTransfer(t *testing.T, dir string, data []byte, src Source) *Transfer {
	t.Helper()
	return &Transfer{
		Path:   filepath.Join(dir, "file.bin"),
		Size:   int64(len(data)),
		SHA256: digest(data),
		Source: src,
		State:  FileState{Path: filepath.Join(dir, "file.cp")},
		Block:  16 << 10,
		Retry:  quickRetry,
		Logger: slog.New(slog.DiscardHandler),
	}
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d expected", path, len(got), len(want))
	}
	if _, err := os.Stat(PartPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(".part left behind: %v", err)
	}
}

// server serves data with http.ServeContent (which implements Range) and records the Range
// headers it was asked for and the body bytes it wrote. cutAt > 0 aborts the first response
// after that many body bytes.
type server struct {
	data        []byte
	ignoreRange bool

	mu     sync.Mutex
	cutAt  int
	ranges []string
	sent   int
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	cut := s.cutAt
	s.cutAt = 0
	s.mu.Unlock()
	if s.ignoreRange {
		r.Header.Del("Range")
	}
	cw := &countingWriter{ResponseWriter: w, s: s, limit: cut}
	http.ServeContent(cw, r, "file.bin", time.Unix(1700000000, 0), bytes.NewReader(s.data))
}

func (s *server) stats() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...), s.sent
}

type countingWriter struct {
	http.ResponseWriter
	s     *server
	limit int
	n     int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.limit > 0 && c.n+len(p) > c.limit {
		p = p[:c.limit-c.n]
		n, _ := c.ResponseWriter.Write(p)
		c.add(n)
		c.ResponseWriter.(http.Flusher).Flush()
		// Drops the connection mid-body, as a network cut would.
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(p)
	c.add(n)
	return n, err
}

func (c *countingWriter) add(n int) {
	c.n += n
	c.s.mu.Lock()
	c.s.sent += n
	c.s.mu.Unlock()
}

func tlsSource(t *testing.T, h http.Handler) HTTPSource {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	// The server would log the aborted handlers, which are the point of those tests.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return HTTPSource{URL: ts.URL + "/file.bin?token=secret", Client: ts.Client()}
}

func TestHTTPSTransferWhole(t *testing.T) {
	data := testData(300<<10+123, 1)
	srv := &server{data: data}
	tr := newTransfer(t, t.TempDir(), data, tlsSource(t, srv))
	var progress []int64
	tr.Progress = func(done, total int64) {
		if total != int64(len(data)) {
			t.Errorf("progress total %d", total)
		}
		progress = append(progress, done)
	}
	cp, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	if cp.Offset != int64(len(data)) || cp.Refetched != 0 || cp.Resumes != 0 {
		t.Fatalf("checkpoint %+v", cp)
	}
	// One checkpoint per block, the last one partial.
	if want := (len(data) + tr.Block - 1) / tr.Block; len(progress) != want || progress[len(progress)-1] != int64(len(data)) {
		t.Fatalf("%d progress calls, want %d (last %v)", len(progress), want, progress[len(progress)-1:])
	}
	if ranges, sent := srv.stats(); len(ranges) != 1 || ranges[0] != "" || sent != len(data) {
		t.Fatalf("requests %q, %d bytes sent", ranges, sent)
	}

	// Run again: the file is there, nothing is fetched.
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ranges, _ := srv.stats(); len(ranges) != 1 {
		t.Fatalf("complete file fetched again: %q", ranges)
	}
}

func TestHTTPSCutMidwayResumesFromCheckpoint(t *testing.T) {
	data := testData(512<<10, 2)
	const cut = 200<<10 + 777
	srv := &server{data: data, cutAt: cut}
	tr := newTransfer(t, t.TempDir(), data, tlsSource(t, srv))
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	ranges, sent := srv.stats()
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("requests %q", ranges)
	}
	from, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(ranges[1], "bytes="), "-"))
	if err != nil {
		t.Fatal(err)
	}
	if from > cut || cut-from > tr.Block {
		t.Fatalf("resumed from %d after a cut at %d (block %d)", from, cut, tr.Block)
	}
	if sent-len(data) > tr.Block {
		t.Fatalf("%d bytes sent for a %d-byte file: more than one block again", sent, len(data))
	}
}

func TestResumeAcrossRunsTruncatesAndCountsRefetch(t *testing.T) {
	data := testData(256<<10, 3)
	srv := &server{data: data}
	dir := t.TempDir()
	tr := newTransfer(t, dir, data, tlsSource(t, srv))
	ctx, cancel := context.WithCancel(context.Background())
	tr.Progress = func(done, _ int64) {
		if done >= 100<<10 {
			cancel()
		}
	}
	cp, err := tr.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	// A crash between the write of a block and its checkpoint leaves bytes beyond it.
	const extra = 5000
	f, err := os.OpenFile(PartPath(tr.Path), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, extra)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	tr.Progress = nil
	cp2, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	if cp2.Resumes != cp.Resumes+1 || cp2.Refetched != cp.Refetched+extra {
		t.Fatalf("before %+v after %+v", cp, cp2)
	}
	ranges, _ := srv.stats()
	if last := ranges[len(ranges)-1]; last != "bytes="+strconv.FormatInt(cp.Offset, 10)+"-" {
		t.Fatalf("resumed with %q, checkpoint was at %d", last, cp.Offset)
	}
}

func TestServerIgnoringRange(t *testing.T) {
	data := testData(200<<10, 4)
	const cut = 90 << 10
	srv := &server{data: data, ignoreRange: true, cutAt: cut}
	tr := newTransfer(t, t.TempDir(), data, tlsSource(t, srv))
	cp, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	ranges, sent := srv.stats()
	if len(ranges) != 2 {
		t.Fatalf("requests %q", ranges)
	}
	// The second answer is the whole file again; what came before the offset is re-fetched.
	if cp.Refetched != int64(sent-len(data)) || cp.Refetched == 0 || cp.Refetched > cut {
		t.Fatalf("refetched %d, server sent %d for %d", cp.Refetched, sent, len(data))
	}
}

func TestPermanentHTTPErrors(t *testing.T) {
	for _, code := range []int{http.StatusNotFound, http.StatusGone, http.StatusRequestedRangeNotSatisfiable} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var calls int
			var mu sync.Mutex
			src := tlsSource(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				mu.Lock()
				calls++
				mu.Unlock()
				http.Error(w, "no", code)
			}))
			tr := newTransfer(t, t.TempDir(), []byte("abc"), src)
			_, err := tr.Run(context.Background())
			var he *HTTPError
			if !errors.Is(err, ErrPermanent) || !errors.As(err, &he) || he.StatusCode != code {
				t.Fatalf("err %v", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the URL's query (a token) is in the error: %v", err)
			}
			if calls != 1 {
				t.Fatalf("%d requests for a permanent error", calls)
			}
		})
	}
}

func TestTransientHTTPErrorsAreRetried(t *testing.T) {
	data := testData(40<<10, 5)
	var mu sync.Mutex
	fails := 3
	srv := &server{data: data}
	src := tlsSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := fails > 0
		fails--
		mu.Unlock()
		if f {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	tr := newTransfer(t, t.TempDir(), data, src)
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
}

func TestSizeAndHashViolations(t *testing.T) {
	want := testData(100<<10, 6)
	cases := []struct {
		name   string
		served []byte
		reason manifest.Reason
	}{
		{"other bytes", testData(100<<10, 7), manifest.ReasonHashMismatch},
		{"longer", append(append([]byte(nil), want...), "more"...), manifest.ReasonTooLarge},
		{"shorter", want[:len(want)-10], manifest.ReasonTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := &server{data: c.served}
			tr := newTransfer(t, t.TempDir(), want, tlsSource(t, srv))
			_, err := tr.Run(context.Background())
			if manifest.ReasonOf(err) != c.reason {
				t.Fatalf("err %v, want reason %s", err, c.reason)
			}
			if _, err := os.Stat(tr.Path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("rejected file put in place: %v", err)
			}
			if ranges, _ := srv.stats(); len(ranges) != 1 {
				t.Fatalf("permanent failure retried: %q", ranges)
			}
			if c.reason != manifest.ReasonHashMismatch {
				return
			}
			// Reset: the next attempt starts from zero and, with the right bytes, succeeds.
			cp, ok, err := tr.State.Load()
			if err != nil || !ok || cp.Offset != 0 {
				t.Fatalf("checkpoint after mismatch %+v %v %v", cp, ok, err)
			}
			if st, err := os.Stat(PartPath(tr.Path)); err != nil || st.Size() != 0 {
				t.Fatalf(".part after mismatch: %v", err)
			}
			srv.data = want
			if _, err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkFile(t, tr.Path, want)
			if ranges, _ := srv.stats(); ranges[len(ranges)-1] != "" {
				t.Fatalf("retry after a mismatch did not start clean: %q", ranges)
			}
		})
	}
}

func TestUnusableCheckpointStartsOver(t *testing.T) {
	data := testData(50<<10, 8)
	srv := &server{data: data}
	dir := t.TempDir()
	tr := newTransfer(t, dir, data, tlsSource(t, srv))
	if err := os.WriteFile(PartPath(tr.Path), data[:20<<10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tr.State.Save(Checkpoint{Offset: 20 << 10, Hash: []byte("not a sha256 state")}); err != nil {
		t.Fatal(err)
	}
	cp, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	if cp.Refetched != 20<<10 {
		t.Fatalf("checkpoint %+v", cp)
	}
}

// flakySource is the innermost fake: bytes from memory, failing every other Open after a few
// bytes with a transient error.
type flakySource struct {
	data []byte
	offs []int64
}

func (f *flakySource) Open(_ context.Context, off int64) (io.ReadCloser, error) {
	f.offs = append(f.offs, off)
	r := io.Reader(bytes.NewReader(f.data[off:]))
	if len(f.offs) < 4 {
		r = io.MultiReader(io.LimitReader(r, 3000), errReader{errors.New("link dropped")})
	}
	return io.NopCloser(r), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestTransientSourceErrorsKeepPartialBlocks(t *testing.T) {
	data := testData(64<<10, 9)
	src := &flakySource{data: data}
	tr := newTransfer(t, t.TempDir(), data, src)
	tr.Block = 8 << 10
	cp, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	if cp.Refetched != 0 {
		t.Fatalf("bytes received before an error were fetched again: %+v", cp)
	}
	if want := []int64{0, 3000, 6000, 9000}; !slices.Equal(src.offs, want) {
		t.Fatalf("opened at %v, want %v", src.offs, want)
	}
}

func TestContextEndsRetries(t *testing.T) {
	src := HTTPSource{URL: "http://127.0.0.1:1/none"} // nothing listens on port 1
	tr := newTransfer(t, t.TempDir(), []byte("abc"), src)
	tr.Retry = backoff.Policy{Base: 10 * time.Millisecond, Cap: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := tr.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
}

func TestInvalidTransfer(t *testing.T) {
	good := Transfer{Path: "x", Size: 1, SHA256: make([]byte, 32), Source: &flakySource{}, State: FileState{Path: "y"}}
	for name, mod := range map[string]func(*Transfer){
		"no path":   func(t *Transfer) { t.Path = "" },
		"size":      func(t *Transfer) { t.Size = 0 },
		"sha":       func(t *Transfer) { t.SHA256 = t.SHA256[:31] },
		"no source": func(t *Transfer) { t.Source = nil },
	} {
		tr := good
		mod(&tr)
		if _, err := tr.Run(context.Background()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFileState(t *testing.T) {
	dir := t.TempDir()
	s := FileState{Path: filepath.Join(dir, "cp")}
	if _, ok, err := s.Load(); ok || err != nil {
		t.Fatalf("empty: %v %v", ok, err)
	}
	want := Checkpoint{Offset: 42, Hash: []byte{1, 2, 3}, Refetched: 7, Resumes: 2}
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Load()
	if err != nil || !ok || got.Offset != want.Offset || !bytes.Equal(got.Hash, want.Hash) || got.Refetched != 7 || got.Resumes != 2 {
		t.Fatalf("loaded %+v %v %v", got, ok, err)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load(); ok || err != nil {
		t.Fatalf("after remove: %v %v", ok, err)
	}
	// A damaged file is an error, not a silent fresh start: the caller decides.
	if err := os.WriteFile(s.Path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err == nil {
		t.Fatal("garbage checkpoint loaded")
	}
}
