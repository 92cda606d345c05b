package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the DST cases need Europe/Berlin wherever the tests run

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/logging"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
)

func interval(sec uint32) termconfig.LogUploadSchedule {
	return termconfig.LogUploadSchedule{Mode: termconfig.LogUploadInterval, IntervalSec: sec, Streams: []termconfig.LogStream{"ecr"}}
}

func daily(at string) termconfig.LogUploadSchedule {
	return termconfig.LogUploadSchedule{Mode: termconfig.LogUploadDaily, DailyAt: at, Streams: []termconfig.LogStream{"ecr"}}
}

func TestNextLogUploadInterval(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		s    termconfig.LogUploadSchedule
		last time.Time
		want time.Time
		ok   bool
	}{
		{"never uploaded: at once", interval(300), time.Time{}, now, true},
		{"after the interval", interval(300), now.Add(-100 * time.Second), now.Add(200 * time.Second), true},
		{"overdue (terminal was off): at once, once", interval(300), now.Add(-5 * time.Hour), now.Add(-5*time.Hour + 300*time.Second), true},
		{"last in the future (clock went back): at once", interval(300), now.Add(time.Hour), now, true},
		{"no interval", interval(0), time.Time{}, time.Time{}, false},
		{"off", termconfig.LogUploadSchedule{Mode: termconfig.LogUploadOff}, time.Time{}, time.Time{}, false},
		{"factory zero value", termconfig.LogUploadSchedule{}, time.Time{}, time.Time{}, false},
		{"daily without a time", daily("3am"), time.Time{}, time.Time{}, false},
	} {
		got, ok := nextLogUpload(c.s, c.last, now, time.UTC)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%s: next = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
		if ok && !got.After(now) && c.want.After(now) {
			t.Errorf("%s: due too early", c.name)
		}
	}
}

func TestNextLogUploadDaily(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, berlin) }
	for _, c := range []struct {
		name      string
		now, last time.Time
		slot      string
		want      time.Time
	}{
		{"before today's slot", at(2026, 3, 2, 1, 0), time.Time{}, "03:00", at(2026, 3, 2, 3, 0)},
		{"exactly at the slot: due", at(2026, 3, 2, 3, 0), at(2026, 3, 1, 3, 0), "03:00", at(2026, 3, 2, 3, 0)},
		{"late within the grace: due", at(2026, 3, 2, 3, 40), at(2026, 3, 1, 3, 0), "03:00", at(2026, 3, 2, 3, 0)},
		{"missed by more than the grace: tomorrow", at(2026, 3, 2, 9, 0), time.Time{}, "03:00", at(2026, 3, 3, 3, 0)},
		{"served today: tomorrow", at(2026, 3, 2, 3, 0).Add(time.Second), at(2026, 3, 2, 3, 0), "03:00", at(2026, 3, 3, 3, 0)},
		{"an interval run before the slot does not serve it", at(2026, 3, 2, 2, 0), at(2026, 3, 2, 1, 0), "03:00", at(2026, 3, 2, 3, 0)},
		{"yesterday's late slot in its grace after midnight", at(2026, 3, 3, 0, 10), at(2026, 3, 1, 23, 30), "23:30", at(2026, 3, 2, 23, 30)},
		{"end of the month", at(2026, 3, 31, 4, 30), at(2026, 3, 31, 3, 0), "03:00", at(2026, 4, 1, 3, 0)},
		{"the day summer time starts", at(2026, 3, 29, 1, 0), at(2026, 3, 28, 3, 0), "03:00", at(2026, 3, 29, 3, 0)},
	} {
		got, ok := nextLogUpload(daily(c.slot), c.last, c.now, berlin)
		if !ok || !got.Equal(c.want) {
			t.Errorf("%s: next = %v, %v; want %v", c.name, got, ok, c.want)
		}
	}
}

// Over weeks across both changes of summer time, a daily slot runs exactly once a local day,
// at its time of day (or an hour off on the day that time does not exist), never twice in
// the repeated hour.
func TestDailyAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		slot  string
		start time.Time
	}{
		{"02:30", time.Date(2026, 3, 20, 12, 0, 0, 0, berlin)},  // 29 March: 02:30 does not exist
		{"03:00", time.Date(2026, 3, 20, 12, 0, 0, 0, berlin)},  // the first hour after the gap
		{"02:30", time.Date(2026, 10, 18, 12, 0, 0, 0, berlin)}, // 25 October: 02:30 happens twice
		{"00:00", time.Date(2026, 10, 18, 12, 0, 0, 0, berlin)},
	} {
		s := daily(c.slot)
		hh, mm := int(c.slot[0]-'0')*10+int(c.slot[1]-'0'), int(c.slot[3]-'0')*10+int(c.slot[4]-'0')
		now, last := c.start, time.Time{}
		runs := map[string]int{}
		for now.Before(c.start.AddDate(0, 0, 14)) {
			next, ok := nextLogUpload(s, last, now, berlin)
			if !ok {
				t.Fatalf("%s: nothing scheduled at %v", c.slot, now)
			}
			if next.After(now) {
				// Like the loop, wake at least once a minute.
				now = now.Add(min(next.Sub(now), maxScheduleWait))
				continue
			}
			local := now.In(berlin)
			runs[local.Format("2006-01-02")]++
			if off := local.Hour()*60 + local.Minute() - (hh*60 + mm); off != 0 && off != 60 && off != -60 {
				t.Errorf("%s: ran at %v", c.slot, local)
			}
			last = now
			now = now.Add(time.Second) // the run itself
		}
		if len(runs) != 14 {
			t.Errorf("%s from %v: ran on %d days, want 14: %v", c.slot, c.start, len(runs), runs)
		}
		for day, n := range runs {
			if n != 1 {
				t.Errorf("%s: %d runs on %s", c.slot, n, day)
			}
		}
	}
}

// fakeClock drives uploadSchedule.loop: each wait the loop starts is announced on waits, and
// the test decides when it ends.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	pending chan time.Time
	waits   chan time.Time
	held    *time.Time // a wait announced and not yet ended
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.pending = ch
	deadline := c.now.Add(d)
	c.mu.Unlock()
	c.waits <- deadline
	return ch
}

// runUntil lets the loop's waits end one by one until the next would end after end; the
// clock is then at end and the loop waiting.
func (c *fakeClock) runUntil(end time.Time) {
	for {
		var deadline time.Time
		if c.held != nil {
			deadline, c.held = *c.held, nil
		} else {
			deadline = <-c.waits
		}
		if deadline.After(end) {
			c.held = &deadline
			c.set(end)
			return
		}
		c.set(deadline)
		c.mu.Lock()
		c.pending <- deadline
		c.mu.Unlock()
	}
}

func TestUploadScheduleLoop(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clk := &fakeClock{now: t0, waits: make(chan time.Time)}
	var mu sync.Mutex
	var runs []time.Time
	failNext := 0
	s := uploadSchedule{now: clk.Now, after: clk.After, loc: time.UTC, log: slog.New(slog.DiscardHandler),
		run: func(ctx context.Context, sched termconfig.LogUploadSchedule, at time.Time) error {
			mu.Lock()
			defer mu.Unlock()
			runs = append(runs, at)
			if failNext > 0 {
				failNext--
				return errors.New("outbox full")
			}
			return nil
		}}
	got := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(runs)
	}
	updates := make(chan *termconfig.Document)
	// apply hands the loop a new configuration; the wait it was in is over.
	apply := func(s termconfig.LogUploadSchedule) {
		d := termconfig.Default()
		d.TMS.LogUpload = s
		updates <- d
		clk.held = nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.loop(ctx, updates, time.Time{})
		close(done)
	}()

	// No upload yet: the first is due as soon as an interval is configured.
	apply(interval(300))
	clk.runUntil(t0.Add(650 * time.Second))
	want := []time.Time{t0, t0.Add(300 * time.Second), t0.Add(600 * time.Second)}
	if r := got(); !slices.Equal(r, want) {
		t.Fatalf("interval runs %v, want %v", r, want)
	}
	// A failed run is tried again a minute later, and the interval counts from the success.
	mu.Lock()
	failNext = 1
	mu.Unlock()
	clk.runUntil(t0.Add(1300 * time.Second))
	want = append(want, t0.Add(900*time.Second), t0.Add(960*time.Second), t0.Add(1260*time.Second))
	if r := got(); !slices.Equal(r, want) {
		t.Fatalf("runs around a failure %v, want %v", r, want)
	}
	// off: the loop only waits for the next configuration (it starts no timer at all).
	apply(termconfig.LogUploadSchedule{Mode: termconfig.LogUploadOff})
	clk.set(t0.Add(6 * time.Hour))
	// daily: 03:00 today is long gone, so the next night.
	apply(daily("03:00"))
	clk.runUntil(time.Date(2026, 3, 3, 4, 0, 0, 0, time.UTC))
	want = append(want, time.Date(2026, 3, 3, 3, 0, 0, 0, time.UTC))
	if r := got(); !slices.Equal(r, want) {
		t.Fatalf("runs after off and daily %v, want %v", r, want)
	}
	cancel()
	<-done

	// A restart reads the last run: the interval continues from it rather than starting over.
	clk.set(t0.Add(100 * time.Second))
	runs = nil
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		s.loop(ctx, updates, t0)
		close(done)
	}()
	apply(interval(300))
	clk.runUntil(t0.Add(400 * time.Second))
	if r := got(); !slices.Equal(r, []time.Time{t0.Add(300 * time.Second)}) {
		t.Fatalf("after a restart: runs %v, want one at +300s", r)
	}
	cancel()
	<-done
}

// testAgent is the part of an agent that scheduled uploads use, on a real database, outbox,
// ECR log and agent log in dir.
type testAgent struct {
	*Agent
	agentLog *logging.Log
}

func openTestAgent(t *testing.T, dir string, now func() time.Time) *testAgent {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	commit := store.NewCommitter(db)
	discard := slog.New(slog.DiscardHandler)
	ob, err := outbox.Open(db, commit, outbox.Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	ecr, err := ecrlog.Open(filepath.Join(dir, "data", "ecr.log"), 1<<20, 5, ecrlog.Options{Now: now, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	agentLog, err := logging.New(logging.Options{Stderr: io.Discard, File: filepath.Join(dir, "agent.log")})
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{Agent: &Agent{db: db, commit: commit, Outbox: ob, ecrLog: ecr, logs: agentLog, log: discard}, agentLog: agentLog}
	t.Cleanup(a.close)
	if _, err := a.openLogUpload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

// close stops the agent; closing twice is harmless.
func (a *testAgent) close() {
	a.ecrLog.Close()
	a.agentLog.Close()
	a.commit.Close()
	a.db.Close()
}

type batchBody struct {
	Command   *string  `cbor:"command"`
	Scheduled bool     `cbor:"scheduled"`
	Batch     int      `cbor:"batch"`
	Lines     []string `cbor:"lines"`
}

// batches returns the log.batch records queued on stream.
func (a *testAgent) batches(t *testing.T, stream string) []batchBody {
	t.Helper()
	recs, err := a.Outbox.Read(0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []batchBody
	for _, r := range recs {
		if r.Stream != stream {
			continue
		}
		var env tmsproto.Envelope
		if err := tmsproto.Unmarshal(r.Payload, &env); err != nil {
			t.Fatal(err)
		}
		var b batchBody
		if err := cbor.Unmarshal(env.Body, &b); err != nil || env.Kind != "log.batch" {
			t.Fatalf("%s record %q: %v", stream, env.Kind, err)
		}
		out = append(out, b)
	}
	return out
}

func processIDs(t *testing.T, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var v struct {
			ProcessID string `json:"processId"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v.ProcessID)
	}
	return out
}

func TestScheduledUploadKeepsItsPlace(t *testing.T) {
	dir := t.TempDir()
	// One clock for every line and run, an hour back so that the files' modification times
	// (real) never precede the lines in them.
	clk := &fakeClock{now: time.Now().Add(-time.Hour).Truncate(time.Second)}
	advance := func(d time.Duration) time.Time {
		clk.mu.Lock()
		defer clk.mu.Unlock()
		clk.now = clk.now.Add(d)
		return clk.now
	}
	tick := func() time.Time { return advance(time.Second) } // each line a second after the last
	runAt := func() time.Time { return advance(5 * time.Second) }
	ctx := context.Background()
	sched := termconfig.LogUploadSchedule{Mode: termconfig.LogUploadInterval, IntervalSec: 300,
		Streams: []termconfig.LogStream{"ecr", "pos", "agent"}}
	record := func(a *testAgent, from, to int, pad int) {
		for i := from; i < to; i++ {
			a.ecrLog.Record(ecrlog.Entry{Method: "GET", Path: "/v2/status", ProcessID: fmt.Sprint(i), HTTP: 200,
				Response: []byte(`{"statusCode":0,"data":{"chequeInfo":{"cardMask":"6222021234561236"},"pad":"` + strings.Repeat("x", pad) + `"}}`)})
		}
	}
	// Agent log lines as slog writes them, at the test's clock.
	agentLine := func(a *testAgent, msg string) {
		line := fmt.Sprintf(`{"time":%q,"level":"INFO","msg":%q}`+"\n", tick().Format(time.RFC3339Nano), msg)
		if _, err := a.agentLog.File().Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}

	a := openTestAgent(t, dir, tick)
	record(a, 0, 3, 0)
	agentLine(a, "hello from the agent")
	at1 := runAt()
	if err := a.uploadScheduled(ctx, sched, at1); err != nil {
		t.Fatal(err)
	}
	ecr := a.batches(t, tmsproto.StreamLogECR)
	if len(ecr) != 1 || !ecr[0].Scheduled || ecr[0].Command != nil || ecr[0].Batch != 1 ||
		!slices.Equal(processIDs(t, ecr[0].Lines), []string{"0", "1", "2"}) {
		t.Fatalf("first ecr upload: %+v", ecr)
	}
	if strings.Contains(strings.Join(ecr[0].Lines, ""), "6222021234561236") {
		t.Fatal("a card number went up")
	}
	agentLog := a.batches(t, tmsproto.StreamLogAgent)
	if len(agentLog) != 1 || !agentLog[0].Scheduled || len(agentLog[0].Lines) != 1 ||
		!strings.Contains(agentLog[0].Lines[0], "hello from the agent") {
		t.Fatalf("agent log upload: %+v", agentLog)
	}
	if pos := a.batches(t, tmsproto.StreamLogPOS); len(pos) != 0 {
		t.Fatalf("pos goes up record by record, not from here: %+v", pos)
	}
	if last, err := a.getTime(keyLastRun); err != nil || !last.Equal(at1) {
		t.Fatalf("last run %v, %v; want %v", last, err, at1)
	}

	// A restart in between: the marks are in the database, nothing goes up twice. An agent
	// log line of the last 2 s before a run waits for the next one.
	a.close()
	a = openTestAgent(t, dir, tick)
	record(a, 3, 5, 0)
	agentLine(a, "after the restart")
	advance(5 * time.Second)
	agentLine(a, "settling") // a second before the run: left for the next one
	if err := a.uploadScheduled(ctx, sched, tick()); err != nil {
		t.Fatal(err)
	}
	ecr = a.batches(t, tmsproto.StreamLogECR)
	if len(ecr) != 2 || !slices.Equal(processIDs(t, ecr[1].Lines), []string{"3", "4"}) {
		t.Fatalf("second ecr upload: %+v", ecr[1:])
	}
	agentLog = a.batches(t, tmsproto.StreamLogAgent)
	if len(agentLog) != 2 || len(agentLog[1].Lines) != 1 || !strings.Contains(agentLog[1].Lines[0], "after the restart") {
		t.Fatalf("agent log after the restart: %+v", agentLog[1:])
	}
	if err := a.uploadScheduled(ctx, sched, runAt()); err != nil {
		t.Fatal(err)
	}
	agentLog = a.batches(t, tmsproto.StreamLogAgent)
	if len(agentLog) != 3 || len(agentLog[2].Lines) != 1 || !strings.Contains(agentLog[2].Lines[0], "settling") {
		t.Fatalf("agent log's settled line: %+v", agentLog[2:])
	}

	// Many lines: several batches, each within the bound, every line once.
	record(a, 5, 160, 1000)
	if err := a.uploadScheduled(ctx, sched, runAt()); err != nil {
		t.Fatal(err)
	}
	ecr = a.batches(t, tmsproto.StreamLogECR)[2:]
	var ids []string
	for i, b := range ecr {
		size := 0
		for _, l := range b.Lines {
			size += len(l)
		}
		if b.Batch != i+1 || size > maxBatch {
			t.Fatalf("batch %d numbered %d with %d bytes", i, b.Batch, size)
		}
		ids = append(ids, processIDs(t, b.Lines)...)
	}
	if len(ecr) < 3 || len(ids) != 155 || ids[0] != "5" || ids[154] != "159" {
		t.Fatalf("%d batches, %d lines", len(ecr), len(ids))
	}

	// A run cut short after its first batch (the agent stopped): the next run resumes at the
	// last line that went up, repeating that one line and losing none.
	record(a, 160, 300, 1000)
	stop := errors.New("stopped")
	src, err := a.logSource("ecr")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	src.read = readerFunc(func(from, to time.Time, fn func([]byte) error) error {
		return a.ecrLog.ReadRange(from, to, func(line []byte) error {
			if n++; n > 60 {
				return stop
			}
			return fn(line)
		})
	})
	if err := a.uploadSince(ctx, "ecr", src, runAt()); !errors.Is(err, stop) {
		t.Fatalf("interrupted run: %v", err)
	}
	if err := a.uploadScheduled(ctx, sched, runAt()); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, b := range a.batches(t, tmsproto.StreamLogECR)[2:] {
		for _, id := range processIDs(t, b.Lines) {
			count[id]++
		}
	}
	var repeated []int
	for i := 5; i < 300; i++ {
		switch count[fmt.Sprint(i)] {
		case 0:
			t.Fatalf("line %d lost", i)
		case 1:
		default:
			repeated = append(repeated, i)
		}
	}
	if len(repeated) != 1 || count[fmt.Sprint(repeated[0])] != 2 || repeated[0] < 160 {
		t.Fatalf("lines repeated: %v; want only the boundary line, twice", repeated)
	}
}

type readerFunc func(from, to time.Time, fn func([]byte) error) error

func (f readerFunc) ReadRange(from, to time.Time, fn func([]byte) error) error {
	return f(from, to, fn)
}
