package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/tmsclient"
)

func noEnv(string) string { return "" }

func TestFlagsDefaultsAndScenarios(t *testing.T) {
	c, err := parseFlags([]string{"-mosquitto", "-n", "20000"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Procs != 3 {
		t.Errorf("procs for 20000 terminals = %d, want ceil(20000/9000) = 3", c.Procs)
	}
	if c.PartitionMode != wire.Blackhole || !c.Jitter || len(c.Scenarios) != 1 || c.Scenarios[0] != scSteady {
		t.Errorf("defaults: mode %v jitter %v scenarios %v", c.PartitionMode, c.Jitter, c.Scenarios)
	}
	c, err = parseFlags([]string{"-mosquitto", "-scenario", "idle,all", "-partition-mode", "reset", "-procs", "2"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{scSteady, scIdle, scStorm, scPartition, scConfig, scOTA}
	if strings.Join(c.Scenarios, ",") != strings.Join(want, ",") {
		t.Errorf("scenarios %v, want %v (run order)", c.Scenarios, want)
	}
	if c.PartitionMode != wire.Reset || c.Procs != 2 {
		t.Errorf("mode %v procs %d", c.PartitionMode, c.Procs)
	}
	// Secrets come from the environment.
	env := map[string]string{envDeviceSecret: "ds", envTMSPassword: "tp"}
	c, err = parseFlags([]string{"-broker", "tcp://127.0.0.1:1883"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceSecret != "ds" || c.TMSPassword != "tp" {
		t.Errorf("secrets from the environment: %q %q", c.DeviceSecret, c.TMSPassword)
	}
}

func TestFlagsRejected(t *testing.T) {
	for _, args := range [][]string{
		{},                                     // no broker
		{"-broker", "tcp://x:1", "-mosquitto"}, // both
		{"-mosquitto", "-n", "0"},
		{"-mosquitto", "-n", "3", "-procs", "4"},
		{"-mosquitto", "-scenario", "weather"},
		{"-mosquitto", "-partition-mode", "up"},
		{"-mosquitto", "-partition-share", "0"},
		{"-mosquitto", "-prefix", "bad/prefix"},
		{"-broker", "tcp://x:1", "-device-secret", "s", "-tms-password", "p", "-scenario", "storm"}, // storm needs -mosquitto
		{"-broker", "tcp://x:1"}, // no secrets
		{"-mosquitto", "extra"},
	} {
		if _, err := parseFlags(args, noEnv, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: err %v, want a usage error", args, err)
		}
	}
}

func TestHelpHidesWorkerFlag(t *testing.T) {
	var out syncio.Buffer
	code := run(context.Background(), []string{"-h"}, env{stdout: io.Discard, stderr: &out, getenv: noEnv})
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	text := out.String()
	for _, want := range []string{"-scenario", "-procs", "-storm-compare", "-partition-mode", "-report"} {
		if !strings.Contains(text, want) {
			t.Errorf("usage lacks %s", want)
		}
	}
	if strings.Contains(text, "-worker") {
		t.Errorf("usage shows the internal -worker flag:\n%s", text)
	}
	if code := run(context.Background(), []string{"-n", "x"}, env{stdout: io.Discard, stderr: io.Discard, getenv: noEnv}); code != exitUsage {
		t.Errorf("bad flag: exit %d, want %d", code, exitUsage)
	}
}

func TestCutIndexSpreadsTheShare(t *testing.T) {
	for _, tc := range []struct {
		n     int
		share float64
	}{{100, 0.2}, {50, 0.2}, {10, 1}, {7, 0.5}, {10000, 0.05}} {
		cut, run, maxRun := 0, 0, 0
		for g := range tc.n {
			if cutIndex(g, tc.share) {
				cut++
				run++
				maxRun = max(maxRun, run)
			} else {
				run = 0
			}
		}
		if want := int(math.Floor(float64(tc.n) * tc.share)); cut != want {
			t.Errorf("n %d share %v: %d cut, want %d", tc.n, tc.share, cut, want)
		}
		if tc.share <= 0.5 && maxRun > 1 {
			t.Errorf("n %d share %v: %d neighbours cut in a row; want them spread", tc.n, tc.share, maxRun)
		}
	}
	// Shards deciding alone agree with the whole: split 100 at 37.
	whole, split := 0, 0
	for g := range 100 {
		if cutIndex(g, 0.3) {
			whole++
		}
	}
	for _, r := range [][2]int{{0, 37}, {37, 100}} {
		for g := r[0]; g < r[1]; g++ {
			if cutIndex(g, 0.3) {
				split++
			}
		}
	}
	if whole != split {
		t.Errorf("cut %d as a whole, %d in shards", whole, split)
	}
}

func TestMergeTimelinesAlignsShards(t *testing.T) {
	origin := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	bucket := 100 * time.Millisecond
	// Shard A started 1 s before the origin, shard B 1.05 s before: B's buckets straddle the
	// grid and land in the interval their start falls in.
	a := shardTimeline{started: origin.Add(-time.Second), buckets: []fleet.Bucket{
		{At: 0, Connects: 2, Connected: 2},
		{At: 900 * time.Millisecond, Connected: 0, Failures: 1},  // grid -100ms
		{At: 1000 * time.Millisecond, Connects: 1, Connected: 1}, // grid 0
		{At: 1100 * time.Millisecond, Connects: 1, Connected: 2}, // grid 100
	}}
	b := shardTimeline{started: origin.Add(-1050 * time.Millisecond), buckets: []fleet.Bucket{
		{At: 0, Connects: 3, Connected: 3},
		{At: 1000 * time.Millisecond, Connected: 0},              // -50ms → grid -100
		{At: 1100 * time.Millisecond, Connects: 3, Connected: 3}, // 50ms → grid 0
	}}
	got := mergeTimelines([]shardTimeline{a, b}, origin, origin.Add(-200*time.Millisecond), origin.Add(200*time.Millisecond), bucket)
	want := []stormBucket{
		{TMs: -200, Connected: 2 + 3},          // carried from before the range
		{TMs: -100, Failures: 1, Connected: 0}, // both down
		{TMs: 0, Connects: 1 + 3, Connected: 1 + 3},
		{TMs: 100, Connects: 1, Connected: 2 + 3},
		{TMs: 200, Connected: 2 + 3}, // carried forward
	}
	if len(got) != len(want) {
		t.Fatalf("%d buckets, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bucket %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestStormFigures(t *testing.T) {
	r := stormReport{BucketMs: 100}
	// 10 terminals: down before 0, then 3, 5, 5, 9, 10 connected.
	conn := []int{10, 0, 0, 3, 5, 5, 9, 10, 10}
	prev := 10
	for i, c := range conn {
		connects := max(0, c-prev)
		if i == 0 {
			connects = 0
		}
		r.Timeline = append(r.Timeline, stormBucket{TMs: int64(i-2) * 100, Connects: connects, Connected: c})
		prev = c
	}
	stormFigures(&r, 10)
	check := func(name string, got *float64, want float64) {
		t.Helper()
		if got == nil || math.Abs(*got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, fmtSec(got), want)
		}
	}
	check("to50", r.To50Sec, 0.3) // 5 connected in the bucket starting at 200 ms: its end
	check("to95", r.To95Sec, 0.6) // 10 ≥ ceil(9.5) in the bucket at 500 ms
	check("to100", r.To100Sec, 0.6)
	if r.PeakConnectsPerSec != 40 { // 4 in one bucket (5 → 9)
		t.Errorf("peak per 100 ms ×10 = %v, want 40", r.PeakConnectsPerSec)
	}
	if r.PeakConnectsPer1Sec != 10 {
		t.Errorf("peak in 1 s = %v, want 10", r.PeakConnectsPer1Sec)
	}
	never := stormReport{BucketMs: 100, Timeline: []stormBucket{{TMs: 0, Connected: 3}}}
	stormFigures(&never, 10)
	if never.To50Sec != nil || never.To100Sec != nil {
		t.Errorf("a fleet that never got back has times %s %s", fmtSec(never.To50Sec), fmtSec(never.To100Sec))
	}
}

func TestCheckLoss(t *testing.T) {
	seqs := tmsclient.NewSeqChecker()
	for _, s := range []uint64{1, 2, 4, 2} { // 3 missing, 2 duplicated
		seqs.Observe("A", tmsproto.StreamEvent, s)
	}
	seqs.Observe("A", tmsproto.StreamStats, 1)
	seqs.Observe("B", tmsproto.StreamEvent, 1)
	rows := []terminalRow{
		{ID: "A", LastSeq: map[string]uint64{tmsproto.StreamEvent: 4, tmsproto.StreamStats: 1}},
		{ID: "B", LastSeq: map[string]uint64{tmsproto.StreamEvent: 3}}, // 2..3 never arrived
	}
	l := checkLoss(seqs, []string{tmsproto.StreamEvent, tmsproto.StreamStats}, rows)
	if l.Streams != 4 || l.Complete != 2 || l.Missing != 3 || len(l.Examples) != 2 {
		t.Errorf("loss %+v, want 4 streams, 2 complete (A/stats, B/stats with none), 3 missing", l)
	}
	seqs.Observe("A", tmsproto.StreamEvent, 3)
	seqs.Observe("B", tmsproto.StreamEvent, 3)
	seqs.Observe("B", tmsproto.StreamEvent, 2)
	if l := checkLoss(seqs, []string{tmsproto.StreamEvent, tmsproto.StreamStats}, rows); l.Missing != 0 || l.Complete != 4 {
		t.Errorf("after the late records: %+v", l)
	}
}

func TestIdleFigures(t *testing.T) {
	tr := func(in, out, si, so int64) wire.Traffic {
		return wire.Traffic{BytesIn: in, BytesOut: out, SegsIn: si, SegsOut: so, Conns: 1}
	}
	rows0 := []terminalRow{
		{ID: "A", Traffic: tr(100, 1000, 10, 10), LastSeq: map[string]uint64{"stats": 1, "event": 1}},
		{ID: "B", Traffic: tr(100, 1000, 10, 10), LastSeq: map[string]uint64{"stats": 1, "event": 1}},
	}
	rows1 := []terminalRow{
		{ID: "A", Traffic: tr(120, 1900, 14, 16), LastSeq: map[string]uint64{"stats": 2, "event": 1}},
		{ID: "B", Traffic: tr(110, 1000, 12, 11), LastSeq: map[string]uint64{"stats": 1, "event": 2}},
	}
	r, err := idleFigures(rows0, rows1, 10*time.Minute, 5*time.Minute, time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	wantA := int64(20 + 900 + (4+6)*wire.HeaderBytes)
	wantB := int64(10 + 0 + (2+1)*wire.HeaderBytes)
	if r.Traffic.IPBytes != wantA+wantB || r.Traffic.BytesUp != 900 || r.Traffic.BytesDown != 30 || r.Traffic.Conns != 0 {
		t.Errorf("window traffic %+v, want ip %d", r.Traffic, wantA+wantB)
	}
	if r.StatsRecords != 1 || r.OtherRecords != 1 || r.KeepAliveIntervals != 2 {
		t.Errorf("records %d/%d, keepalive intervals %v", r.StatsRecords, r.OtherRecords, r.KeepAliveIntervals)
	}
	if r.IPBytesDist.Min != float64(wantB) || r.IPBytesDist.Max != float64(wantA) || len(r.Rows) != 2 {
		t.Errorf("dist %+v rows %d", r.IPBytesDist, len(r.Rows))
	}
	perMonth := float64(wantA+wantB) / 2 * (30 * 24 * 6) // ten-minute windows in 30 days
	if math.Abs(r.IPBytesPerMonth-perMonth) > 1e-6*perMonth {
		t.Errorf("per month %v, want %v", r.IPBytesPerMonth, perMonth)
	}
	if _, err := idleFigures(rows0, rows1[:1], time.Minute, time.Minute, time.Hour, false); err == nil {
		t.Error("rows of different fleets accepted")
	}
}

func TestMergeSnapshots(t *testing.T) {
	t0 := time.Now()
	m := mergeSnapshots([]fleet.Snapshot{
		{At: t0, Terminals: 2, Connected: 1, Connects: 3, Published: 5, Traffic: wire.Traffic{BytesOut: 10, SegsOut: 2}, Errors: map[string]int{"EOF": 1}},
		{At: t0.Add(time.Second), Terminals: 3, Connected: 3, Connects: 3, Published: 1, Traffic: wire.Traffic{BytesOut: 5}, Errors: map[string]int{"EOF": 2, "refused": 1}, OutboxRecords: 4},
	})
	if m.Terminals != 5 || m.Connected != 4 || m.Connects != 6 || m.Published != 6 || m.OutboxRecords != 4 ||
		m.Traffic.BytesOut != 15 || m.Traffic.SegsOut != 2 || m.Errors["EOF"] != 3 || m.Errors["refused"] != 1 || !m.At.Equal(t0.Add(time.Second)) {
		t.Errorf("merged %+v", m)
	}
}

func TestLiveLine(t *testing.T) {
	t0 := time.Now()
	prev := fleet.Snapshot{At: t0, Terminals: 4, Connects: 2, Published: 10}
	cur := fleet.Snapshot{At: t0.Add(2 * time.Second), Terminals: 4, Connected: 3, Connects: 6, Published: 30, Commands: 4,
		Traffic: wire.Traffic{BytesOut: 4096}, Errors: map[string]int{"EOF": 1}}
	line := liveLine("storm", 5*time.Second, cur, prev)
	for _, want := range []string{"storm", "connected 3/4", "conn/s 2.0", "up 10.0 msg/s", "down 2.0 msg/s", "up 1.0KiB", `"EOF"×1`} {
		if !strings.Contains(line, want) {
			t.Errorf("live line %q lacks %q", line, want)
		}
	}
}

func TestProcParsers(t *testing.T) {
	rss, hwm := parseStatus([]byte("Name:\tmosquitto\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads: 1\n"))
	if rss != 1<<20 || hwm != 2<<20 {
		t.Errorf("rss %d hwm %d", rss, hwm)
	}
	user, sys := parseStat([]byte("42 (mos quit) to) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 200"))
	if user != 2.5 || sys != 0.75 {
		t.Errorf("cpu %v %v, want 2.5 0.75", user, sys)
	}
	if u, s := parseStat([]byte("garbage")); u != 0 || s != 0 {
		t.Errorf("garbage parsed as %v %v", u, s)
	}
	self := selfUsage("me")
	if self.PID == 0 || self.CPUSec() < 0 || self.Goroutines == 0 {
		t.Errorf("self usage %+v", self)
	}
}

func TestDecodeRequest(t *testing.T) {
	req, err := decodeRequest([]byte(`{"id":3,"op":"partition","share":0.5,"mode":1}`))
	if err != nil || req.ID != 3 || req.Op != opPartition || req.Share != 0.5 || req.Mode != wire.Blackhole {
		t.Errorf("decoded %+v, %v", req, err)
	}
	for _, bad := range []string{``, `{}`, `{"id":1}`, `{"op":"heal"}`, `{"id":1,"op":"heal","what":1}`, `{"id":1,"op":"heal"} {}`, `[1]`} {
		if _, err := decodeRequest([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestWorkerProtocol drives a worker over its stdin and stdout without a fleet: every
// request gets exactly one answer with its id, errors travel as text, and the worker exits
// when its stdin ends.
func TestWorkerProtocol(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- runWorker(context.Background(), "1/1", false, inR, outW, io.Discard)
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	send := func(line string) response {
		t.Helper()
		if _, err := io.WriteString(inW, line+"\n"); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() {
			t.Fatalf("no answer to %s: %v", line, lines.Err())
		}
		var resp response
		if err := json.Unmarshal(lines.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := send(`{"id":1,"op":"snapshot"}`); r.ID != 1 || !strings.Contains(r.Err, ErrNotStarted.Error()) || r.Usage == nil || r.Usage.PID == 0 {
		t.Errorf("snapshot before start: %+v", r)
	}
	if r := send(`{"id":2,"op":"dance"}`); r.ID != 2 || !strings.Contains(r.Err, "unknown op") {
		t.Errorf("unknown op: %+v", r)
	}
	if r := send(`not json`); r.ID != 0 || !strings.Contains(r.Err, "bad request") {
		t.Errorf("bad line: %+v", r)
	}
	if r := send(`{"id":4,"op":"start"}`); r.ID != 4 || r.Err == "" {
		t.Errorf("start without a spec: %+v", r)
	}
	if r := send(`{"id":5,"op":"close"}`); r.ID != 5 || r.Err != "" || r.Usage == nil {
		t.Errorf("close of nothing: %+v", r)
	}
	inW.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("worker exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit at the end of its stdin")
	}
}

func TestDevicePasswordIsStableAndDistinct(t *testing.T) {
	a, b := devicePassword("s", "FS-00001"), devicePassword("s", "FS-00002")
	if a != devicePassword("s", "FS-00001") || a == b || a == devicePassword("t", "FS-00001") || len(a) != 32 {
		t.Errorf("passwords %q %q", a, b)
	}
}
