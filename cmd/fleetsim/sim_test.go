package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/fleet"
	"github.com/posagent/posagent/internal/fleet/wire"
	"github.com/posagent/posagent/internal/mosquitto"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/testbroker"
)

// TestMain lets the test binary serve as its own worker process: fleetsim re-executes
// os.Executable() with -worker, which under go test is this binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-worker" {
		os.Exit(run(context.Background(), os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
	}
	os.Exit(m.Run())
}

func needMosquitto(t *testing.T) {
	t.Helper()
	if _, err := mosquitto.LookPath(); err != nil {
		t.Skipf("mosquitto: %v", err)
	}
}

// quick are the timings that keep a CI run in seconds: a short reconnect backoff, a broker
// down for a second, keepalive and stats in seconds.
var quick = []string{
	"-duration", "2s", "-timeout", "90s", "-every", "500ms",
	"-backoff-base", "500ms", "-backoff-cap", "2s",
	"-storm-settle", "0", "-storm-down", "1s",
	"-partition-for", "2s", "-partition-events", "3",
	"-stats-interval", "1s", "-keepalive", "2s", "-ping-timeout", "1s",
	"-ota-size", "20000",
}

// simulateArgs runs fleetsim like the command line does and returns its report and stderr.
func simulateArgs(t *testing.T, args ...string) (*Report, int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.json")
	var stderr syncio.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})
	args = append(append([]string{"-dir", t.TempDir(), "-report", path}, quick...), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := run(ctx, args, env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr, getenv: noEnv})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("exit %d, no report: %v\n%s", code, err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep, code, stderr.String()
}

// checkReport checks the invariants every scenario promises.
func checkReport(t *testing.T, rep *Report, n int) {
	t.Helper()
	if rep.Error != "" || len(rep.Failures) > 0 {
		t.Errorf("error %q, failures %q", rep.Error, rep.Failures)
	}
	if len(rep.Fleets) == 0 {
		t.Fatal("no fleet run in the report")
	}
	for _, f := range rep.Fleets {
		if f.AllConnectedSec <= 0 || f.Final.Terminals != n || len(f.Processes) == 0 {
			t.Errorf("fleet run %+v", f)
		}
	}
	if s := rep.Steady; s != nil {
		if s.Connected != n || s.WindowSec <= 0 || s.SinceStart.BytesUp <= 0 || s.SinceStart.IPBytes <= s.SinceStart.BytesUp {
			t.Errorf("steady: %+v", s)
		}
	}
	if p := rep.Partition; p != nil {
		cut := int(float64(n) * 0.2)
		if !p.OK || p.Missing != 0 || p.Streams != n*len(fleet.DefaultStreams) || p.Complete != p.Streams ||
			p.Cut != cut || p.EventsQueued != cut*p.EventsPerTerminal || p.Received == 0 {
			t.Errorf("partition: %+v", p)
		}
	}
	if c := rep.ConfigPush; c != nil {
		if !c.OK || c.Succeeded != n || c.AtVersion != n || c.States["succeeded"] != n || c.Failed+c.TimedOut != 0 {
			t.Errorf("config push: %+v", c)
		}
	}
	if o := rep.OTA; o != nil {
		if !o.OK || o.Succeeded != n || o.Installed != n || o.States["succeeded"] != n || o.BlobBytesServed < int64(n*o.FileBytes) {
			t.Errorf("ota: %+v", o)
		}
	}
	for _, s := range rep.Storms {
		last := s.Timeline[len(s.Timeline)-1]
		if !s.AllReconnected || s.Reconnected != n || s.To100Sec == nil || s.To50Sec == nil ||
			*s.To50Sec > *s.To100Sec || last.Connected != n || s.Connects < uint64(n) || s.PeakConnectsPerSec <= 0 {
			t.Errorf("storm (jitter %v): %+v", s.Jitter, s)
		}
		// The timeline shows the fleet down while the broker was.
		down := false
		for _, b := range s.Timeline {
			if b.TMs < 0 && b.Connected == 0 {
				down = true
			}
		}
		if !down {
			t.Errorf("storm (jitter %v): the timeline never shows the fleet down", s.Jitter)
		}
	}
}

// TestScenariosInProcess runs every scenario, the idle window and the lock-step storm on
// one process against a Mosquitto fleetsim starts.
func TestScenariosInProcess(t *testing.T) {
	needMosquitto(t)
	const n = 50
	scenarios := "all,idle"
	// The idle window refuses to measure without the kernel's segment counters (under a
	// user-mode emulator, say); TestIdleNeedsSegments covers that refusal.
	noSegs := segmentsCounted() != nil
	if noSegs {
		scenarios = "all"
	}
	rep, code, stderr := simulateArgs(t, "-mosquitto", "-n", "50", "-procs", "1",
		"-scenario", scenarios, "-storm-compare", "-partition-mode", "reset", "-report-terminals")
	if code != exitOK {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	checkReport(t, rep, n)
	for _, sec := range []struct {
		name string
		nil  bool
	}{{"steady", rep.Steady == nil}, {"idle", rep.Idle == nil && !noSegs}, {"partition", rep.Partition == nil},
		{"config", rep.ConfigPush == nil}, {"ota", rep.OTA == nil}} {
		if sec.nil {
			t.Errorf("no %s section", sec.name)
		}
	}
	if len(rep.Storms) != 2 || !rep.Storms[0].Jitter || rep.Storms[1].Jitter || len(rep.Fleets) != 2 {
		t.Fatalf("storm compare: %d storms, %d fleet runs", len(rep.Storms), len(rep.Fleets))
	}
	if rep.Broker == nil || rep.Broker.RSSBytes <= 0 || rep.Steady.Broker == nil {
		t.Errorf("no broker figures: %+v", rep.Broker)
	}
	if id := rep.Idle; id != nil {
		// Stats every second over a two-second window: every terminal sent some, and the
		// window's traffic is theirs (with keepalives), counted with its segments.
		if id.Terminals != n || id.StatsRecords < n || id.Traffic.BytesUp <= 0 || id.Traffic.SegsUp <= 0 ||
			id.Traffic.IPBytes != id.Traffic.BytesUp+id.Traffic.BytesDown+(id.Traffic.SegsUp+id.Traffic.SegsDown)*52 ||
			id.KeepAliveIntervals < 0.9 || id.IPBytesPerMonth <= 0 || len(id.Rows) != n {
			t.Errorf("idle: %+v", id)
		}
	}
	if !strings.Contains(stderr, "connected") {
		t.Errorf("no live line on stderr:\n%s", stderr)
	}
}

// TestWorkerProcesses runs the fleet in two worker processes (this test binary re-executed)
// and checks that the parent merges them: snapshots, the partition across both, and the
// per-process figures.
func TestWorkerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	needMosquitto(t)
	const n = 40
	rep, code, stderr := simulateArgs(t, "-mosquitto", "-n", "40", "-procs", "2",
		"-scenario", "steady,storm,partition,config", "-partition-mode", "blackhole")
	if code != exitOK {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	checkReport(t, rep, n)
	procs := rep.Fleets[0].Processes
	pids := map[int]bool{}
	workers := 0
	for _, p := range procs {
		pids[p.PID] = true
		if strings.HasPrefix(p.Role, "worker ") {
			workers++
			if p.Terminals != n/2 || p.CPUSec() <= 0 || p.PeakRSSBytes <= 0 {
				t.Errorf("worker figures %+v", p)
			}
		}
	}
	if workers != 2 || len(pids) != 3 {
		t.Errorf("processes %+v: want this one and two workers", procs)
	}
}

// TestExternalBroker runs against a broker fleetsim did not start (internal/testbroker, with
// its own device passwords), as against a production broker.
func TestExternalBroker(t *testing.T) {
	const n = 30
	c, err := parseFlags(append([]string{"-n", "30", "-broker", "tcp://127.0.0.1:1", "-device-secret", "unused",
		"-tms-password", "unused", "-scenario", "steady,partition,config", "-partition-mode", "reset", "-dir", t.TempDir()}, quick...),
		noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := testbroker.Start(t, testbroker.Options{Devices: c.deviceIDs()})
	c.Broker, c.TMSUser, c.TMSPassword, c.password = b.URL(), b.TMSUser(), b.TMSPassword(), b.DevicePassword
	var stderr syncio.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := simulate(ctx, c, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	checkReport(t, rep, n)
	if rep.Config.LocalBroker || rep.Broker != nil || rep.Steady == nil || rep.Partition == nil || rep.ConfigPush == nil {
		t.Errorf("report of an external broker run: %+v", rep.Config)
	}
}

// TestStormNeedsLocalBroker: the storm restarts the broker, which only -mosquitto can.
func TestStormNeedsLocalBroker(t *testing.T) {
	c, err := parseFlags([]string{"-n", "2", "-broker", "tcp://127.0.0.1:1", "-device-secret", "x", "-tms-password", "y"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{cfg: c}
	if err := s.storm(context.Background()); !errors.Is(err, ErrNoBroker) {
		t.Errorf("storm without a local broker: %v", err)
	}
}

// TestWritePasswd writes the password file an external Mosquitto needs: the TMS account and
// one line per terminal, in Mosquitto 2's PBKDF2 form.
func TestWritePasswd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	code := run(context.Background(), []string{"-n", "3", "-write-passwd", path, "-device-secret", "sec", "-tms-password", "tp"},
		env{stdout: io.Discard, stderr: io.Discard, getenv: noEnv})
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "tms:$7$") || !strings.HasPrefix(lines[3], "FS-00002:$7$") {
		t.Errorf("password file:\n%s", data)
	}
	// It never overwrites.
	if code := run(context.Background(), []string{"-n", "3", "-write-passwd", path, "-device-secret", "sec", "-tms-password", "tp"},
		env{stdout: io.Discard, stderr: io.Discard, getenv: noEnv}); code == exitOK {
		t.Error("an existing password file was overwritten")
	}
}

// TestIdleNeedsSegments: on a machine whose kernel segment counters cannot be read, the idle
// scenario refuses with ErrNoSegments instead of reporting payload bytes as mobile data.
func TestIdleNeedsSegments(t *testing.T) {
	needMosquitto(t)
	real := segmentsCounted
	segmentsCounted = func() error { return wire.ErrNoSegments }
	t.Cleanup(func() { segmentsCounted = real })
	rep, code, _ := simulateArgs(t, "-mosquitto", "-n", "3", "-procs", "1", "-scenario", "idle")
	if code == exitOK || !strings.Contains(rep.Error, wire.ErrNoSegments.Error()) || rep.Idle != nil {
		t.Errorf("exit %d, error %q, idle %+v: want a refusal naming the missing counters", code, rep.Error, rep.Idle)
	}
}
