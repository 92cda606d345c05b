package ecrlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/logging"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRecordMasksAndRedacts(t *testing.T) {
	clk := newClock(t0)
	l := openTest(t, 1<<20, 2, Options{Now: clk.Now})
	resp := `{"statusCode":0,"data":{"processId":"p-1","status":"success","chequeInfo":{"cardMask":"` + pan16 +
		`","amount":"1 ₸","pinEntered":true,"rrn":"612345678901"},"n":` + pan16 +
		`,"accessToken":"tok-A","refreshToken":"tok-R","expirationDate":"2026-03-02T12:00:00Z"}}`
	l.Record(Entry{
		Time: t0.Add(-1500 * time.Millisecond), Remote: "192.168.1.20:50123", ECR: "till-1",
		Method: "GET", Path: "/v2/status",
		Query: url.Values{"processId": {"p-1"}, "refreshToken": {"tok-Q"}, "note": {"card " + pan13}},
		HTTP:  200, Code: 0, Response: []byte(resp), Duration: 1500 * time.Millisecond, ProcessID: "p-1",
	})
	lines := rawLines(t, l, time.Time{}, time.Time{})
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	raw := string(lines[0])
	if !strings.HasPrefix(raw, `{"time":"2026-03-01T12:00:00Z",`) {
		t.Errorf("line does not start with its time: %s", raw)
	}
	if ts, ok := logging.LineTime(lines[0]); !ok || !ts.Equal(t0) {
		t.Errorf("LineTime = %v, %v", ts, ok)
	}
	for _, secret := range []string{pan16, pan13, "tok-A", "tok-R", "tok-Q"} {
		if strings.Contains(raw, secret) {
			t.Errorf("line contains %q: %s", secret, raw)
		}
	}

	var m struct {
		Start      time.Time           `json:"start"`
		Remote     string              `json:"remote"`
		ECR        string              `json:"ecr"`
		Method     string              `json:"method"`
		Path       string              `json:"path"`
		Query      map[string][]string `json:"query"`
		HTTP       int                 `json:"http"`
		Code       *int                `json:"code"`
		DurationMs float64             `json:"durationMs"`
		ProcessID  string              `json:"processId"`
		Response   struct {
			StatusCode *int `json:"statusCode"`
			Data       struct {
				ChequeInfo struct {
					CardMask   string `json:"cardMask"`
					Amount     string `json:"amount"`
					PINEntered bool   `json:"pinEntered"`
					RRN        string `json:"rrn"`
				} `json:"chequeInfo"`
				N              string `json:"n"`
				AccessToken    string `json:"accessToken"`
				RefreshToken   string `json:"refreshToken"`
				ExpirationDate string `json:"expirationDate"`
			} `json:"data"`
		} `json:"response"`
	}
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatal(err)
	}
	if !m.Start.Equal(t0.Add(-1500*time.Millisecond)) || m.Remote != "192.168.1.20:50123" || m.ECR != "till-1" ||
		m.Method != "GET" || m.Path != "/v2/status" || m.HTTP != 200 || m.Code == nil || *m.Code != 0 ||
		m.DurationMs != 1500 || m.ProcessID != "p-1" {
		t.Errorf("fields: %+v", m)
	}
	wantQuery := map[string][]string{"processId": {"p-1"}, "refreshToken": {logging.Redacted}, "note": {"card " + pan13Mask}}
	if fmt.Sprint(m.Query) != fmt.Sprint(wantQuery) {
		t.Errorf("query = %v, want %v", m.Query, wantQuery)
	}
	d := m.Response.Data
	if m.Response.StatusCode == nil || d.ChequeInfo.CardMask != pan16Mask || d.N != pan16Mask ||
		d.AccessToken != logging.Redacted || d.RefreshToken != logging.Redacted {
		t.Errorf("response not masked/redacted: %+v", m.Response)
	}
	// What is not secret stays as it was: a bool under a "pin" key, text, short numbers, dates.
	if !d.ChequeInfo.PINEntered || d.ChequeInfo.Amount != "1 ₸" || d.ChequeInfo.RRN != "612345678901" ||
		d.ExpirationDate != "2026-03-02T12:00:00Z" {
		t.Errorf("response lost data: %+v", d)
	}
	if lines, dropped, errs := l.Stats(); lines != 1 || dropped != 0 || errs != 0 {
		t.Errorf("Stats = %d, %d, %d", lines, dropped, errs)
	}
}

func TestLongResponsesAreCut(t *testing.T) {
	l := openTest(t, 1<<20, 0, Options{})
	// JSON: cut as text, with the full length given.
	big := `{"statusCode":0,"data":{"blob":"` + strings.Repeat("é", MaxResponse) + `"}}`
	l.Record(Entry{Method: "GET", Path: "/v2/status", Response: []byte(big)})
	// Text whose cut ends inside a 20-digit run: the run is no card number, what is left of it is.
	text := strings.Repeat("x", MaxResponse-len(pan16)) + pan16 + "0000 and more"
	l.Record(Entry{Method: "GET", Path: "/v2/x", Response: []byte(text)})
	// Short text keeps its length and loses the token written in it.
	l.Record(Entry{Method: "GET", Path: "/v2/y", HTTP: 500, Code: 999, Response: []byte(`oops accessToken=abc123&pan=` + pan19)})

	lines := rawLines(t, l, time.Time{}, time.Time{})
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, line := range lines {
		if len(line) > 3*MaxResponse {
			t.Errorf("line %d is %d bytes", i, len(line))
		}
		if pans := cardNumbers(string(line)); len(pans) > 0 {
			t.Errorf("line %d has card numbers %v", i, pans)
		}
	}
	var cut struct {
		Response          string `json:"response"`
		ResponseTruncated int    `json:"responseTruncated"`
	}
	if err := json.Unmarshal(lines[0], &cut); err != nil {
		t.Fatal(err)
	}
	if cut.ResponseTruncated != len(big) || len(cut.Response) > MaxResponse ||
		!strings.HasPrefix(cut.Response, `{"data":{"blob":"éé`) || !json.Valid(lines[0]) {
		t.Errorf("cut JSON response: %d bytes, truncated %d, starts %.40q", len(cut.Response), cut.ResponseTruncated, cut.Response)
	}
	if err := json.Unmarshal(lines[1], &cut); err != nil {
		t.Fatal(err)
	}
	if cut.ResponseTruncated != len(text) || !strings.HasSuffix(cut.Response, pan16Mask) || len(cut.Response) != MaxResponse {
		t.Errorf("cut text response: truncated %d, ends %q", cut.ResponseTruncated, cut.Response[len(cut.Response)-20:])
	}
	var short struct {
		Response          string `json:"response"`
		ResponseTruncated *int   `json:"responseTruncated"`
		HTTP, Code        int
	}
	if err := json.Unmarshal(lines[2], &short); err != nil {
		t.Fatal(err)
	}
	if short.Response != "oops accessToken=[redacted]&pan=622202*********0128" || short.ResponseTruncated != nil ||
		short.HTTP != 500 || short.Code != 999 {
		t.Errorf("text response = %+v", short)
	}
}

func TestTokensInTextAreRedacted(t *testing.T) {
	for in, want := range map[string]string{
		`accessToken=abc&x=1`:           `accessToken=[redacted]&x=1`,
		`{"accessToken": "abc", "n": 1`: `{"accessToken": "[redacted]", "n": 1`,
		`refreshtoken: 'abc' rest`:      `refreshtoken: '[redacted]' rest`,
		`TOKEN=`:                        `TOKEN=`,
		`tokenType=bearer`:              `tokenType=bearer`,
		`no secret here`:                `no secret here`,
		`a token=x;b token=y`:           `a token=[redacted];b token=[redacted]`,
		`"accessToken":"abc"}token:`:    `"accessToken":"[redacted]"}token:`,
	} {
		if got := redactTokenText(in); got != want {
			t.Errorf("redactTokenText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOddInputStaysOneValidLine(t *testing.T) {
	l := openTest(t, 1<<20, 0, Options{})
	q := url.Values{"a\nb": {"x\x00" + pan16 + "\u2028"}, "k\xff": {strings.Repeat("9", 10000)}}
	l.Record(Entry{Method: "GET\r\n", Path: "/v2/" + strings.Repeat("p", 5000), Remote: "\xfe", Query: q,
		Duration: -time.Second, Response: []byte(`["\u0036\u0032` + pan16[2:] + `", 1e400, -` + pan16 + `]`)})
	l.Record(Entry{Method: "GET", Path: "/", Duration: 1000 * time.Hour})
	lines := rawLines(t, l, time.Time{}, time.Time{})
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, line := range lines {
		if !json.Valid(line) || bytes.ContainsAny(line, "\n\r") {
			t.Fatalf("not one JSON line: %q", line)
		}
		m := decodeLine(t, line)
		for _, s := range append(jsonTexts(m, nil), string(line)) {
			if pans := cardNumbers(s); len(pans) > 0 {
				t.Errorf("card numbers %v in %q", pans, s)
			}
		}
	}
	m := decodeLine(t, lines[0])
	if d := m["durationMs"].(json.Number); d != "0" {
		t.Errorf("negative duration written as %s", d)
	}
	if p := m["path"].(string); len(p) > maxPath+len(cut) || !strings.HasSuffix(p, cut) {
		t.Errorf("path of %d bytes kept as %d", 5004, len(p))
	}
	if d := decodeLine(t, lines[1])["durationMs"].(json.Number); d != "86400000" {
		t.Errorf("1000 h written as %s ms", d)
	}
}

func TestRotationAndRanges(t *testing.T) {
	clk := newClock(t0)
	dir := t.TempDir()
	path := filepath.Join(dir, "ecr.log")
	l, err := Open(path, 4<<10, 2, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 100 {
		l.Record(Entry{Method: "GET", Path: "/v2/status", ProcessID: fmt.Sprint(i),
			Response: []byte(`{"statusCode":0,"data":{"status":"wait","pad":"` + strings.Repeat("x", 200) + `"}}`)})
		clk.Add(time.Second)
	}
	ids := func(from, to time.Time) []int {
		var out []int
		for _, line := range rawLines(t, l, from, to) {
			var v struct{ ProcessID string }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatal(err)
			}
			var n int
			fmt.Sscan(v.ProcessID, &n)
			out = append(out, n)
		}
		return out
	}
	all := ids(time.Time{}, time.Time{})
	if len(all) == 0 || all[len(all)-1] != 99 || len(all) >= 100 {
		t.Fatalf("kept ids %v: want the newest ones up to 99 after rotation", all)
	}
	for i := 1; i < len(all); i++ {
		if all[i] != all[i-1]+1 {
			t.Fatalf("kept ids not contiguous: %v", all)
		}
	}
	// [from, to): from inclusive, to exclusive.
	if got := ids(t0.Add(90*time.Second), t0.Add(95*time.Second)); !slices.Equal(got, []int{90, 91, 92, 93, 94}) {
		t.Errorf("[90s, 95s) = %v", got)
	}
	for _, name := range []string{"ecr.log", "ecr.log.1", "ecr.log.2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() > 4<<10 || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v", name, st, err)
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ecr.log.3 kept: %v", err)
	}
}

func TestConcurrentRecords(t *testing.T) {
	l := openTest(t, 64<<10, 3, Options{})
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Record(Entry{Method: "GET", Path: "/v2/status", ProcessID: fmt.Sprintf("%d-%d", w, i),
					Query: url.Values{"processId": {fmt.Sprintf("%d-%d", w, i)}}, Response: []byte(`{"statusCode":0}`)})
			}
		})
	}
	wg.Wait()
	read := rawLines(t, l, time.Time{}, time.Time{})
	if lines, dropped, errs := l.Stats(); lines+dropped != writers*each || errs != 0 || uint64(len(read)) != lines {
		t.Fatalf("Stats %d written + %d dropped (%d errors) of %d; %d read", lines, dropped, errs, writers*each, len(read))
	}
	seen := map[string]bool{}
	var prev time.Time
	for _, line := range read {
		ts, ok := logging.LineTime(line)
		if !ok || ts.Before(prev) {
			t.Fatalf("line time %v after %v (ok %v): the file must stay in time order", ts, prev, ok)
		}
		prev = ts
		var v struct{ ProcessID string }
		if err := json.Unmarshal(line, &v); err != nil || seen[v.ProcessID] {
			t.Fatalf("line %q: %v (repeat %v)", line, err, seen[v.ProcessID])
		}
		seen[v.ProcessID] = true
	}
}

// ReadRange sees every line stamped before it was called, even while writers keep going:
// the scheduled upload moves its mark to the read's end and must never skip a line.
func TestReadRangeSeesEverythingStampedBefore(t *testing.T) {
	l := openTest(t, 4<<20, 1, Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			// Bounded so that nothing rotates away before the final read.
			for i := range 1000 {
				select {
				case <-stop:
					return
				default:
				}
				l.Record(Entry{Method: "GET", Path: "/v2/status", ProcessID: fmt.Sprintf("%d-%d", w, i)})
			}
		})
	}
	type read struct {
		to  time.Time
		ids map[string]bool
	}
	var reads []read
	for range 20 {
		to := time.Now()
		r := read{to: to, ids: map[string]bool{}}
		for _, line := range rawLines(t, l, time.Time{}, to) {
			var v struct{ ProcessID string }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatal(err)
			}
			r.ids[v.ProcessID] = true
		}
		reads = append(reads, r)
	}
	close(stop)
	wg.Wait()
	final := rawLines(t, l, time.Time{}, time.Time{})
	for i, r := range reads {
		want := 0
		for _, line := range final {
			ts, _ := logging.LineTime(line)
			if !ts.Before(r.to) {
				continue
			}
			want++
			var v struct{ ProcessID string }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatal(err)
			}
			if !r.ids[v.ProcessID] {
				t.Fatalf("read %d (to %v) missed %s stamped %v", i, r.to, v.ProcessID, ts)
			}
		}
		if want != len(r.ids) {
			t.Fatalf("read %d saw %d lines, the file has %d before its end", i, len(r.ids), want)
		}
	}
}

func TestCloseAndAfter(t *testing.T) {
	clk := newClock(t0)
	l := openTest(t, 1<<20, 1, Options{Now: clk.Now})
	for range 3 {
		l.Record(Entry{Method: "GET", Path: "/v2/deviceinfo"})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Record(Entry{Method: "GET", Path: "/v2/deviceinfo"})
	if lines, dropped, errs := l.Stats(); lines != 3 || dropped != 1 || errs != 0 {
		t.Errorf("after close: Stats = %d, %d, %d; want every queued line written and the late one dropped", lines, dropped, errs)
	}
	if got := rawLines(t, l, time.Time{}, time.Time{}); len(got) != 3 {
		t.Errorf("read %d lines after close", len(got))
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "ecr.log"), 0, 1, Options{}); err == nil {
		t.Error("zero max size accepted")
	}
}

// A disk that refuses writes: each lost line is counted, and the agent's log hears of it at
// most once a minute, never failing or stopping the recording.
func TestWriteErrorsCountedAndReportedOncePerMinute(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full:", err)
	}
	clk := newClock(t0)
	var logBuf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logBuf}, nil))
	l, err := Open("/dev/full", 1<<20, 0, Options{Now: clk.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	warnings := func() int {
		mu.Lock()
		defer mu.Unlock()
		return strings.Count(logBuf.String(), "ecr exchange log is losing lines")
	}
	for range 5 {
		l.Record(Entry{Method: "GET", Path: "/v2/status"})
	}
	rawLines(t, l, time.Time{}, time.Time{}) // waits for the writer
	if lines, _, errs := l.Stats(); lines != 0 || errs != 5 || warnings() != 1 {
		t.Fatalf("Stats %d lines %d errors, %d warnings; want 0, 5, 1", lines, errs, warnings())
	}
	clk.Add(30 * time.Second)
	l.Record(Entry{Method: "GET", Path: "/v2/status"})
	rawLines(t, l, time.Time{}, time.Time{})
	if warnings() != 1 {
		t.Fatalf("%d warnings within the minute", warnings())
	}
	clk.Add(31 * time.Second)
	l.Record(Entry{Method: "GET", Path: "/v2/status"})
	rawLines(t, l, time.Time{}, time.Time{})
	if _, _, errs := l.Stats(); errs != 7 || warnings() != 2 {
		t.Fatalf("%d errors, %d warnings after a minute; want 7, 2", errs, warnings())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logBuf.String(), "errors=7") {
		t.Errorf("warning lacks the count: %s", logBuf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
