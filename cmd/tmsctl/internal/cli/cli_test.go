package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/tmsclient"
)

func TestKeygen(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "ops-1")
	if r.code != ExitOK {
		t.Fatalf("keygen: %d %s", r.code, r.stderr.String())
	}
	var cfg struct {
		TMS struct {
			CommandKeys []struct {
				ID        string `toml:"id"`
				PublicKey string `toml:"public_key"`
			} `toml:"command_keys"`
		} `toml:"tms"`
	}
	if _, err := toml.Decode(r.stdout.String(), &cfg); err != nil {
		t.Fatalf("snippet %q: %v", r.stdout.String(), err)
	}
	keys := cfg.TMS.CommandKeys
	if len(keys) != 1 || keys[0].ID != "ops-1" {
		t.Fatalf("snippet %q", r.stdout.String())
	}
	pub, err := tmsclient.LoadPublicKey(filepath.Join(dir, "ops-1.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := base64.StdEncoding.DecodeString(keys[0].PublicKey); !pub.Equal(ed25519.PublicKey(raw)) {
		t.Error("snippet public key differs from ops-1.pub")
	}
	if r := tmsctl(ctx, "", "keygen", "--dir", dir, "--id", "ops-1"); r.code != ExitUsage {
		t.Errorf("keygen over an existing key: status %d", r.code)
	}
	if r := tmsctl(ctx, "", "keygen", "--dir", dir); r.code != ExitUsage || !strings.Contains(r.stderr.String(), "--id is required") {
		t.Errorf("keygen without id: %d %q", r.code, r.stderr.String())
	}
}

// sendFixture is a broker, a key and a fake agent answering with answer.
func sendFixture(t *testing.T, answer func(*tmsproto.Command) []tmsproto.Ack) (ctx context.Context, url, keyFile string, agent *fakeAgent) {
	t.Helper()
	ctx = testCtx(t)
	url, _ = startBroker(t, nil)
	dir := t.TempDir()
	key, err := tmsclient.GenerateKey(dir, "ops")
	if err != nil {
		t.Fatal(err)
	}
	agent = startFakeAgent(ctx, t, url, "T-1", key.Public(), key.ID, answer)
	return ctx, url, filepath.Join(dir, "ops.key"), agent
}

func TestSendSucceeds(t *testing.T) {
	ctx, url, keyFile, agent := sendFixture(t, func(cmd *tmsproto.Command) []tmsproto.Ack {
		res, _ := tmsproto.Marshal(map[string]any{"applied": true})
		return []tmsproto.Ack{
			{State: tmsproto.StateAccepted},
			{State: tmsproto.StateRunning, Progress: 50},
			{State: tmsproto.StateRunning, Progress: 50},
			{State: tmsproto.StateSucceeded, Result: res},
		}
	})
	before := time.Now().Unix()
	r := tmsctl(ctx, `{"volume": 3, "name": "shop"}`,
		"send", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "--body", "-", "--expires", "1h", "config.apply")
	if r.code != ExitOK {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.stderr.String())
	}
	cmd := <-agent.got
	var body map[string]any
	if err := tmsproto.Unmarshal(cmd.Body, &body); err != nil {
		t.Fatal(err)
	}
	if cmd.Kind != "config.apply" || body["volume"] != uint64(3) || body["name"] != "shop" {
		t.Errorf("agent got %s %v", cmd.Kind, body)
	}
	if cmd.Expires < before+3600 || cmd.Issued < before {
		t.Errorf("issued %d expires %d, sent at %d with --expires 1h", cmd.Issued, cmd.Expires, before)
	}
	var ack map[string]any
	if err := json.Unmarshal([]byte(r.stdout.String()), &ack); err != nil {
		t.Fatalf("stdout %q: %v", r.stdout.String(), err)
	}
	if ack["state"] != "succeeded" || ack["id"] != cmd.ID || ack["result"].(map[string]any)["applied"] != true {
		t.Errorf("final ack %v", ack)
	}
	stderr := r.stderr.String()
	if strings.Count(stderr, "running  50%") != 1 || !strings.Contains(stderr, "accepted\n") || !strings.Contains(stderr, "sent config.apply to T-1") {
		t.Errorf("progress on stderr:\n%s", stderr)
	}
	seqState, err := os.ReadFile(strings.TrimSuffix(keyFile, ".key") + ".seq.json")
	if err != nil {
		t.Fatal(err)
	}
	var seqs map[string]uint64
	if err := json.Unmarshal(seqState, &seqs); err != nil || seqs["T-1"] != cmd.Seq {
		t.Errorf("seq file %s, command seq %d", seqState, cmd.Seq)
	}

	// Again with flags after the kind, a fixed id, the body from a file and a TTY.
	bodyFile := filepath.Join(t.TempDir(), "b.json")
	if err := os.WriteFile(bodyFile, []byte(`{"x": [1, 2]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := &run{}
	r2.code = Run(ctx, testEnv(r2, "", true, map[string]string{"TMS_BROKER": url}),
		[]string{"send", "selftest", "--device", "T-1", "--sign-key", keyFile, "--id", "fixed-1", "--body", bodyFile}, Commands())
	if r2.code != ExitOK {
		t.Fatalf("second send: %d\n%s", r2.code, r2.stderr.String())
	}
	cmd2 := <-agent.got
	if cmd2.ID != "fixed-1" || cmd2.Seq <= cmd.Seq || cmd2.Kind != "selftest" {
		t.Errorf("second command %+v after seq %d", cmd2, cmd.Seq)
	}
	if want := "\r\x1b[K[###############---------------] running  50%"; !strings.Contains(r2.stderr.String(), want) {
		t.Errorf("TTY progress %q lacks %q", r2.stderr.String(), want)
	}
}

func TestSendRejected(t *testing.T) {
	ctx, url, keyFile, _ := sendFixture(t, func(*tmsproto.Command) []tmsproto.Ack {
		return []tmsproto.Ack{{State: tmsproto.StateRejected, Reason: tmsproto.ReasonUnknownKind, Message: "no handler"}}
	})
	r := tmsctl(ctx, "", "send", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "frobnicate")
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), `"state":"rejected"`) ||
		!strings.Contains(r.stderr.String(), "rejected: unknown_kind (no handler)") {
		t.Errorf("status %d\nstdout %s\nstderr %s", r.code, r.stdout.String(), r.stderr.String())
	}
	// Signed under a key id the agent does not know: rejected by ref, still found.
	r = tmsctl(ctx, "", "send", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "--kid", "other", "reboot")
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), `"reason":"unknown_key"`) {
		t.Errorf("unknown kid: status %d, stdout %s", r.code, r.stdout.String())
	}
}

func TestSendTimesOut(t *testing.T) {
	ctx, url, keyFile, _ := sendFixture(t, nil) // nobody answers
	r := tmsctl(ctx, "", "send", "--broker", url, "--device", "T-1", "--sign-key", keyFile, "--wait", "200ms", "reboot")
	if r.code != ExitTimeout || !strings.Contains(r.stderr.String(), "no final ack") {
		t.Errorf("status %d, stderr %s", r.code, r.stderr.String())
	}
}

func TestSendUsageErrors(t *testing.T) {
	ctx, url, keyFile, _ := sendFixture(t, nil)
	base := []string{"send", "--broker", url, "--device", "T-1", "--sign-key", keyFile}
	for name, args := range map[string][]string{
		"no kind":          base,
		"two kinds":        append(base[:len(base):len(base)], "a", "b"),
		"no device":        {"send", "--broker", url, "--sign-key", keyFile, "reboot"},
		"bad device":       {"send", "--broker", url, "--device", "a/b", "--sign-key", keyFile, "reboot"},
		"no key":           {"send", "--broker", url, "--device", "T-1", "reboot"},
		"missing key file": {"send", "--broker", url, "--device", "T-1", "--sign-key", keyFile + ".nope", "reboot"},
		"bad body":         append(base[:len(base):len(base)], "--body", "-", "reboot"),
		"unknown flag":     append(base[:len(base):len(base)], "--nope", "reboot"),
		"negative expiry":  append(base[:len(base):len(base)], "--expires", "-1m", "reboot"),
		"refused":          {"send", "--broker", "tcp://127.0.0.1:1", "--device", "T-1", "--sign-key", keyFile, "reboot"},
		"TLS on tcp://":    append(base[:len(base):len(base)], "--tls-insecure", "reboot"),
	} {
		if r := tmsctl(ctx, `[1]`, args...); r.code != ExitUsage {
			t.Errorf("%s: status %d, stderr %s", name, r.code, r.stderr.String())
		}
	}
	if r := tmsctl(ctx, "", "send", "-h"); r.code != ExitOK || !strings.Contains(r.stderr.String(), "Exit status:") {
		t.Errorf("send -h: %d", r.code)
	}
	if r := tmsctl(ctx, "", "help", "watch"); r.code != ExitOK || !strings.Contains(r.stderr.String(), "stats may be thinned") {
		t.Errorf("help watch: %d %q", r.code, r.stderr.String())
	}
	if r := tmsctl(ctx, ""); r.code != ExitUsage {
		t.Errorf("no command: %d", r.code)
	}
	if r := tmsctl(ctx, "", "frob"); r.code != ExitUsage {
		t.Errorf("unknown command: %d", r.code)
	}
}

func TestWatchReportsGapsAndDuplicates(t *testing.T) {
	ctx := testCtx(t)
	url, _ := startBroker(t, nil)
	agent := startFakeAgent(ctx, t, url, "T-1", nil, "", nil)
	online, _ := tmsproto.Marshal(tmsproto.Envelope{V: 1, Stream: "online", Seq: 1, Kind: "online", Body: []byte{0xa1, 0x66, 'o', 'n', 'l', 'i', 'n', 'e', 0xf5}})

	r := &run{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.code = Run(ctx, testEnv(r, "", false, map[string]string{"TMS_BROKER": url}), []string{"watch", "--count", "10"}, Commands())
	}()
	waitFor(ctx, t, "the watch to start", func() bool { return strings.Contains(r.stderr.String(), "watching") })

	// Live, not retained: mochi may deliver a retained record twice, which would use up
	// --count before the last record arrives.
	agent.publishRaw(tmsproto.UpTopic("T-1", "online"), online, false)
	for _, seq := range []uint64{1, 2, 5, 5, 3} {
		agent.publishSeq("event", seq, map[string]any{"n": seq})
	}
	agent.publishSeq("stats", 1, map[string]any{})
	agent.publishSeq("stats", 3, map[string]any{})
	agent.publishRaw(tmsproto.UpTopic("T-1", "event"), []byte("junk"), false)
	agent.publishSeq("event", 4, map[string]any{"n": 4})
	<-done

	if r.code != ExitOK {
		t.Fatalf("status %d", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines on stdout, want 10:\n%s", len(lines), r.stdout.String())
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if rec["device"] != "T-1" || rec["topic"] == nil {
			t.Errorf("line %s", l)
		}
	}
	if !strings.Contains(r.stdout.String(), `"stream":"event","seq":5,"ts":1700000000000,"kind":"k","body":{"n":5}`) {
		t.Errorf("stdout lacks the event record:\n%s", r.stdout.String())
	}
	stderr := r.stderr.String()
	for _, want := range []string{
		"gap T-1/event: 3..4 missing\n",
		"duplicate T-1/event seq 5\n",
		"late T-1/event seq 3\n",
		"late T-1/event seq 4\n",
		"gap T-1/stats: 2 missing (stats may be thinned)\n",
		"bad record on tms/v1/T-1/up/event",
		"summary T-1/event: seq 1..5, 5 received, 1 duplicates\n",
		"summary T-1/stats: seq 1..3, 2 received, 0 duplicates, missing 2 (stats may be thinned)\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "T-1/online") {
		t.Errorf("online was seq-checked:\n%s", stderr)
	}
}

func TestWatchOverTLS(t *testing.T) {
	ctx := testCtx(t)
	srvTLS, caFile := serverTLS(t)
	plain, secure := startBroker(t, srvTLS)
	agent := startFakeAgent(ctx, t, plain, "T-7", nil, "", nil)

	r := &run{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.code = Run(ctx, testEnv(r, "", false, nil),
			[]string{"watch", "--broker", secure, "--tls-ca", caFile, "--device", "T-7", "--stream", "receipt", "--count", "1"}, Commands())
	}()
	waitFor(ctx, t, "the watch to start", func() bool {
		return strings.Contains(r.stderr.String(), "watching") || strings.Contains(r.stderr.String(), "tmsctl:")
	})
	agent.publishSeq("event", 1, map[string]any{}) // not watched
	agent.publishSeq("receipt", 1, map[string]any{"total": 1250})
	<-done
	if r.code != ExitOK || !strings.Contains(r.stdout.String(), `"stream":"receipt"`) || strings.Contains(r.stdout.String(), `"event"`) {
		t.Errorf("status %d\nstdout %s\nstderr %s", r.code, r.stdout.String(), r.stderr.String())
	}
	// Without the CA the broker's certificate is not trusted.
	if r := tmsctl(ctx, "", "watch", "--broker", secure, "--connect-timeout", "5s"); r.code != ExitUsage {
		t.Errorf("untrusted broker: status %d", r.code)
	}
}

func TestProgressPlainAndBar(t *testing.T) {
	var b syncio.Buffer
	p := &progress{w: &b}
	for _, a := range []tmsproto.Ack{
		{State: "accepted"}, {State: "running", Progress: 10}, {State: "running", Progress: 10},
		{State: "running", Progress: 140}, {State: "failed", Reason: "exec_failed", Message: "disk full", Duplicate: true},
	} {
		p.ack(a)
	}
	p.finish()
	want := "accepted\nrunning  10%\nrunning 100%\nfailed: exec_failed (disk full) [recorded result of an earlier delivery]\n"
	if b.String() != want {
		t.Errorf("plain progress %q, want %q", b.String(), want)
	}
	// An update's stages show beside the bar, and where it failed.
	b.Reset()
	p = &progress{w: &b, tty: true}
	p.ack(tmsproto.Ack{State: "running", Progress: 40, Stage: "downloading"})
	p.ack(tmsproto.Ack{State: "failed", Stage: "health-check", Reason: "rolled_back", Message: "self-test failed"})
	if got := b.String(); !strings.Contains(got, "[############------------------] running  40% downloading") ||
		!strings.Contains(got, "failed health-check: rolled_back (self-test failed)") {
		t.Errorf("tty progress %q", got)
	}
	if got := bar(-5); got != "["+strings.Repeat("-", barWidth)+"]" {
		t.Errorf("bar(-5) = %s", got)
	}
}
