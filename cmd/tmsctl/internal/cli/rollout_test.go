package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/rollout"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/tmsclient"
)

// rolloutFixture is a broker, a key, and terminals T-1, T-2 that trust it and answer every
// command with success, and T-3 that trusts another key under the same id (it rejects every command: bad signature).
func rolloutFixture(t *testing.T) (ctx context.Context, url, keyFile, db string, agents map[string]*fakeAgent) {
	t.Helper()
	ctx = testCtx(t)
	url, _ = startBroker(t, nil)
	dir := t.TempDir()
	key, err := tmsclient.GenerateKey(dir, "ops")
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(*tmsproto.Command) []tmsproto.Ack {
		return []tmsproto.Ack{{State: tmsproto.StateAccepted}, {State: tmsproto.StateSucceeded}}
	}
	agents = map[string]*fakeAgent{
		"T-1": startFakeAgent(ctx, t, url, "T-1", key.Public(), key.ID, ok),
		"T-2": startFakeAgent(ctx, t, url, "T-2", key.Public(), key.ID, ok),
		"T-3": startFakeAgent(ctx, t, url, "T-3", otherPub, key.ID, ok),
	}
	return ctx, url, filepath.Join(dir, "ops.key"), filepath.Join(dir, "rollout.db"), agents
}

func summaryOf(t *testing.T, r *run) rollout.Summary {
	t.Helper()
	var s rollout.Summary
	if err := json.Unmarshal([]byte(r.stdout.String()), &s); err != nil {
		t.Fatalf("stdout %q: %v\nstderr:\n%s", r.stdout.String(), err, r.stderr.String())
	}
	return s
}

func TestRolloutHaltStatusResume(t *testing.T) {
	ctx, url, keyFile, db, agents := rolloutFixture(t)
	// One terminal at a time: T-1 succeeds, T-3 rejects (1 of 2 > 0.4), T-2 stays pending.
	r := tmsctl(ctx, `{"statsIntervalSec": 600}`, "rollout", "start", "--broker", url, "--db", db, "--name", "cfg", "--kind", "config.apply",
		"--body", "-", "--targets", "T-1,T-3,T-2", "--exp", "1x1", "--min-sample", "2", "--max-failure", "0.4", "--sign-key", keyFile)
	if r.code != ExitFailed {
		t.Fatalf("start: status %d, stderr:\n%s", r.code, r.stderr.String())
	}
	if s := summaryOf(t, r); s.Succeeded != 1 || s.Failed != 1 || s.Pending != 1 || !s.Halted {
		t.Fatalf("summary %+v", s)
	}
	stderr := r.stderr.String()
	if !strings.Contains(stderr, "rollout cfg halted: 1 of 2 finished failed") || !strings.Contains(stderr, "rollout cfg: 2/3 finished: 1 succeeded, 1 failed") {
		t.Errorf("stderr:\n%s", stderr)
	}
	got := <-agents["T-1"].got
	if got.Kind != "config.apply" {
		t.Errorf("T-1 got %+v", got)
	}
	select {
	case c := <-agents["T-2"].got:
		t.Fatalf("T-2 got %s before the resume", c.ID)
	default:
	}

	// status: the failed ids, then the whole rollout as JSON, then as a table.
	r = tmsctl(ctx, "", "rollout", "status", "--db", db, "--name", "cfg", "--state", "failed", "--ids")
	if r.code != ExitOK || r.stdout.String() != "T-3\n" {
		t.Fatalf("status --ids: %d %q %s", r.code, r.stdout.String(), r.stderr.String())
	}
	r = tmsctl(ctx, "", "rollout", "status", "--db", db, "--name", "cfg", "--json")
	var st struct {
		Summary   rollout.Summary
		Terminals []rollout.TerminalState
	}
	if err := json.Unmarshal([]byte(r.stdout.String()), &st); err != nil || len(st.Terminals) != 3 {
		t.Fatalf("status --json %q: %v", r.stdout.String(), err)
	}
	if t3 := st.Terminals[1]; t3.ID != "T-3" || t3.State != rollout.StateFailed || t3.Reason != string(tmsproto.ReasonBadSignature) {
		t.Errorf("T-3 %+v", t3)
	}
	if t1 := st.Terminals[0]; t1.State != rollout.StateSucceeded || t1.Command != got.ID {
		t.Errorf("T-1 %+v, got command %s", t1, got.ID)
	}
	r = tmsctl(ctx, "", "rollout", "status", "--db", db, "--name", "cfg")
	if out := r.stdout.String(); !strings.Contains(out, "halted: 1 of 2 finished") || !strings.Contains(out, "T-3") || !strings.Contains(out, "bad_signature") {
		t.Errorf("status table:\n%s", out)
	}

	// The same ratio halts again without sending; a higher one finishes.
	r = tmsctl(ctx, "", "rollout", "resume", "--broker", url, "--db", db, "--name", "cfg", "--sign-key", keyFile)
	if r.code != ExitFailed {
		t.Fatalf("resume at 0.4: %d\n%s", r.code, r.stderr.String())
	}
	r = tmsctl(ctx, "", "rollout", "resume", "--broker", url, "--db", db, "--name", "cfg", "--max-failure", "0.6", "--sign-key", keyFile)
	if r.code != ExitOK {
		t.Fatalf("resume at 0.6: %d\n%s", r.code, r.stderr.String())
	}
	if s := summaryOf(t, r); s.Succeeded != 2 || s.Failed != 1 || s.Pending != 0 || s.Halted || s.Finished.IsZero() {
		t.Fatalf("summary after resume %+v", s)
	}
	if c := <-agents["T-2"].got; c.Kind != "config.apply" {
		t.Errorf("T-2 got %+v", c)
	}
	r = tmsctl(ctx, "", "rollout", "status", "--db", db)
	if out := r.stdout.String(); r.code != ExitOK || !strings.Contains(out, "cfg") || !strings.Contains(out, "finished") {
		t.Errorf("status list: %d\n%s", r.code, out)
	}
	r = tmsctl(ctx, "", "rollout", "start", "--broker", url, "--db", db, "--name", "cfg", "--kind", "reboot", "--targets", "T-1", "--sign-key", keyFile)
	if r.code != ExitUsage || !strings.Contains(r.stderr.String(), "rollout resume -name cfg") {
		t.Errorf("start over an existing name: %d\n%s", r.code, r.stderr.String())
	}
}

func TestRolloutPatternAndStop(t *testing.T) {
	ctx, url, keyFile, db, agents := rolloutFixture(t)
	online, err := tmsproto.Marshal(tmsproto.Online{Online: true})
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range agents {
		env, err := tmsproto.Marshal(tmsproto.Envelope{V: 1, Stream: tmsproto.StreamOnline, Seq: 1, TS: 1, Kind: "online", Body: online})
		if err != nil {
			t.Fatal(err)
		}
		a.publishRaw(tmsproto.UpTopic(id, tmsproto.StreamOnline), env, true)
	}
	r := tmsctl(ctx, "", "rollout", "start", "--broker", url, "--db", db, "--name", "p", "--kind", "stats.now",
		"--pattern", "T-[12]", "--discover-wait", "300ms", "--sign-key", keyFile)
	if r.code != ExitOK {
		t.Fatalf("start --pattern: %d\n%s", r.code, r.stderr.String())
	}
	if s := summaryOf(t, r); s.Total != 2 || s.Succeeded != 2 {
		t.Fatalf("summary %+v", s)
	}
	if !strings.Contains(r.stderr.String(), "2 terminals match T-[12]") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}

	// One a minute: T-1 at once, then a stop from another invocation ends the run.
	done := make(chan *run, 1)
	go func() {
		done <- tmsctl(ctx, "", "rollout", "start", "--broker", url, "--db", db, "--name", "slow", "--kind", "stats.now",
			"--targets", "T-1,T-2", "--rate", "1/min", "--sign-key", keyFile)
	}()
	waitFor(ctx, t, "T-1 to succeed", func() bool {
		r := tmsctl(ctx, "", "rollout", "status", "--db", db, "--name", "slow", "--state", "succeeded", "--ids")
		return r.stdout.String() == "T-1\n"
	})
	if r := tmsctl(ctx, "", "rollout", "stop", "--db", db, "--name", "slow", "--reason", "bad build"); r.code != ExitOK {
		t.Fatalf("stop: %d\n%s", r.code, r.stderr.String())
	}
	r = <-done
	if r.code != ExitFailed || !strings.Contains(r.stderr.String(), "halted: bad build") {
		t.Fatalf("stopped start: %d\n%s", r.code, r.stderr.String())
	}
	if s := summaryOf(t, r); s.Succeeded != 1 || s.Pending != 1 || s.HaltReason != "bad build" {
		t.Fatalf("summary %+v", s)
	}
}

func TestRolloutUsage(t *testing.T) {
	ctx := testCtx(t)
	db := filepath.Join(t.TempDir(), "r.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "--kind", "reboot", "--targets", "A", "--sign-key", "k"}, "--name is required"},
		{[]string{"start", "--name", "n", "--targets", "A", "--sign-key", "k"}, "--kind is required"},
		{[]string{"start", "--name", "n", "--kind", "reboot", "--sign-key", "k"}, "exactly one of --targets"},
		{[]string{"start", "--name", "n", "--kind", "reboot", "--targets", "A", "--pattern", "*", "--sign-key", "k"}, "exactly one of --targets"},
		{[]string{"start", "--name", "n", "--kind", "reboot", "--targets", "A", "--sign-key", "k", "--rate", "5/min", "--exp", "1x2"}, "exclude each other"},
		{[]string{"start", "--name", "n", "--kind", "reboot", "--targets", "A", "--sign-key", "k", "--exp", "1x0.5"}, "the factor"},
		{[]string{"start", "--name", "n", "--kind", "reboot", "--targets", "A", "--sign-key", "k", "--max-failure", "2"}, "within 0..1"},
		{[]string{"start", "--name", "a b", "--kind", "reboot", "--targets", "A", "--sign-key", "k"}, "must match"},
		{[]string{"status", "--db", db, "--state", "lost"}, "unknown --state"},
		{[]string{"stop", "--db", db}, "--name is required"},
		{[]string{"frobnicate"}, "unknown subcommand"},
	} {
		r := tmsctl(ctx, "", append([]string{"rollout"}, c.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr.String(), c.want) {
			t.Errorf("%v: %d, stderr lacks %q:\n%s", c.args, r.code, c.want, r.stderr.String())
		}
	}
	if r := tmsctl(ctx, "", "rollout", "status", "--db", db, "--name", "x"); r.code != ExitUsage {
		t.Errorf("status of a missing database: %d", r.code)
	}
	if r := tmsctl(ctx, "", "help"); !strings.Contains(r.stdout.String(), "rollout") {
		t.Errorf("command list lacks rollout:\n%s", r.stdout.String())
	}
}

func TestParseTargets(t *testing.T) {
	got := parseTargets("A-1\n# comment\n\nB-2, C-3 # trailing\r\nD-4\tE-5\n")
	if want := []string{"A-1", "B-2", "C-3", "D-4", "E-5"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}

func TestRolloutProgressLine(t *testing.T) {
	var out syncio.Buffer
	now := time.Unix(1_700_000_000, 0)
	p := &rolloutProgress{w: &out, tty: true, now: func() time.Time { return now }}
	s := rollout.Summary{Name: "r", Total: 10, Succeeded: 4, Failed: 1, InFlight: 2, Pending: 3}
	p.update(s)
	if want := "\r\x1b[K[###############---------------] rollout r: 5/10 finished: 4 succeeded, 1 failed, 0 timed out; 2 in flight, 3 pending"; out.String() != want {
		t.Fatalf("first line %q, want %q", out.String(), want)
	}
	// Within the second: not redrawn; the final state always is, and ends the line.
	s.Succeeded, s.InFlight = 5, 1
	p.update(s)
	if strings.Count(out.String(), "\r") != 1 {
		t.Fatalf("redrawn within a second: %q", out.String())
	}
	s.Succeeded, s.InFlight, s.Pending, s.Halted, s.HaltReason = 6, 0, 3, true, "stopped"
	p.finish(s)
	if got := out.String(); !strings.HasSuffix(got, "6 succeeded, 1 failed, 0 timed out; 0 in flight, 3 pending; halted: stopped\n") {
		t.Fatalf("final line %q", got)
	}
}
