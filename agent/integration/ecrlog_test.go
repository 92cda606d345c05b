package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/ecrlog"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
)

// ecrBatch is the body of a log.batch record.
type ecrBatch struct {
	Command   string   `cbor:"command"`
	Scheduled bool     `cbor:"scheduled"`
	Batch     int      `cbor:"batch"`
	Lines     []string `cbor:"lines"`
}

func (e *env) ecrBatches(t *testing.T) []ecrBatch {
	t.Helper()
	var out []ecrBatch
	for _, env := range e.stream(tmsproto.StreamLogECR) {
		var b ecrBatch
		if env.Kind != "log.batch" {
			t.Fatalf("kind %q on %s", env.Kind, tmsproto.StreamLogECR)
		}
		if err := looseUnmarshal(env.Body, &b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestECRLogUpload: the cash-register exchanges the agent logged go up on up/log/ecr when the
// TMS asks (logs.upload) and on the schedule of the terminal configuration, with card numbers
// masked and the cash register's tokens nowhere.
func TestECRLogUpload(t *testing.T) {
	const dev = "IT-ECRLOG-1"
	const pan, masked = "6222021234561236", "622202******1236"
	e := newEnv(t, dev)

	// Scheduled uploads off from the start: the factory schedule (daily at 03:00) would
	// otherwise send at start-up when the test runs within an hour after 03:00, and the
	// interval below would then count from that upload.
	off := termconfig.Default()
	off.Version = 1
	off.TMS.LogUpload = termconfig.LogUploadSchedule{Mode: termconfig.LogUploadOff}
	db, err := store.Open(filepath.Join(e.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	term, err := termconfig.Open(db, termconfig.WithLogger(slog.New(slog.DiscardHandler)))
	if err == nil {
		_, err = term.Apply(off)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	a := e.startInProcessAgent("")
	waitFor(t, 20*time.Second, "first stats", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	token := "tok" + hex.EncodeToString(rnd[:])
	start := time.Now()
	a.ECRLog().Record(ecrlog.Entry{Time: start, Remote: "192.0.2.10:50100", Method: "GET", Path: "/v2/register",
		Query: url.Values{"name": {"till-1"}}, HTTP: 200,
		Response: []byte(`{"statusCode":0,"data":{"accessToken":"` + token + `","refreshToken":"` + token + `","expirationDate":"2026-03-02T12:00:00Z"}}`),
		Duration: 3 * time.Second})
	a.ECRLog().Record(ecrlog.Entry{Time: start, Remote: "192.0.2.10:50101", ECR: "till-1", Method: "GET", Path: "/v2/revoke",
		Query: url.Values{"name": {"till-1"}, "refreshToken": {token}}, HTTP: 200,
		Response: []byte(`{"statusCode":105,"errorText":"Error acquired in service process","data":{"message":"Revoke Error. Wrong refresh token"}}`)})
	a.ECRLog().Record(ecrlog.Entry{Time: start, Remote: "192.0.2.10:50102", ECR: "till-1", Method: "GET", Path: "/v2/status",
		Query: url.Values{"processId": {"p-7"}}, HTTP: 200, ProcessID: "p-7",
		Response: []byte(`{"statusCode":0,"data":{"processId":"p-7","status":"success","chequeInfo":{"cardMask":"` + pan + `","rrn":"612345678901"}}}`)})

	checkLines := func(lines []string) {
		t.Helper()
		all := strings.Join(lines, "\n")
		if strings.Contains(all, pan) || strings.Contains(all, token) {
			t.Fatalf("a card number or a token went up:\n%s", all)
		}
		if !strings.Contains(all, masked) || !strings.Contains(all, `"refreshToken":["[redacted]"]`) ||
			!strings.Contains(all, `"accessToken":"[redacted]"`) {
			t.Fatalf("lines lack the masked card number or the redactions:\n%s", all)
		}
		for _, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Fatalf("not a JSON line: %s", l)
			}
		}
	}

	// On request.
	ack := e.send(t, "logs.upload", map[string]any{"log": "ecr", "from": start.Add(-time.Minute).Unix()})
	if ack.State != tmsproto.StateSucceeded {
		t.Fatalf("logs.upload ecr: %+v", ack)
	}
	var res struct {
		Log     string `cbor:"log"`
		Lines   int    `cbor:"lines"`
		Batches int    `cbor:"batches"`
	}
	if err := looseUnmarshal(ack.Result, &res); err != nil || res.Log != "ecr" || res.Lines != 3 || res.Batches != 1 {
		t.Fatalf("logs.upload result %+v, %v", res, err)
	}
	waitFor(t, 10*time.Second, "the requested batch on up/log/ecr", func() bool { return len(e.stream(tmsproto.StreamLogECR)) >= 1 })
	asked := e.ecrBatches(t)[0]
	if asked.Command != ack.ID || asked.Scheduled || asked.Batch != 1 || len(asked.Lines) != 3 ||
		!strings.Contains(asked.Lines[0], `"path":"/v2/register"`) || !strings.Contains(asked.Lines[2], `"path":"/v2/status"`) {
		t.Fatalf("requested batch: %+v", asked)
	}
	checkLines(asked.Lines)

	// An unknown log is refused before anything runs, naming the logs there are.
	if ack := e.send(t, "logs.upload", map[string]any{"log": "kernel"}); ack.State != tmsproto.StateRejected ||
		!strings.Contains(ack.Message, "known: agent, ecr") {
		t.Fatalf("logs.upload kernel: %+v", ack)
	}

	// On schedule: with no scheduled upload so far, an interval configuration sends everything
	// kept at once, each record marked scheduled instead of naming a command.
	a.ECRLog().Record(ecrlog.Entry{Method: "GET", Path: "/v2/deviceinfo", HTTP: 200,
		Response: []byte(`{"statusCode":0,"data":{"posNum":"1","serialNum":"` + dev + `","terminalId":"10000001"}}`)})
	doc := termconfig.Default()
	doc.Version = 2
	doc.TMS.LogUpload = termconfig.LogUploadSchedule{Mode: termconfig.LogUploadInterval, IntervalSec: 300,
		Streams: []termconfig.LogStream{termconfig.LogStreamECR, termconfig.LogStreamPOS}}
	body, err := termconfig.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	if ack := e.send(t, "config.apply", cborRaw(body)); ack.State != tmsproto.StateSucceeded {
		t.Fatalf("config.apply: %+v", ack)
	}
	waitFor(t, 20*time.Second, "the scheduled batch on up/log/ecr", func() bool { return len(e.stream(tmsproto.StreamLogECR)) >= 2 })
	scheduled := e.ecrBatches(t)[1]
	if !scheduled.Scheduled || scheduled.Command != "" || scheduled.Batch != 1 || len(scheduled.Lines) != 4 ||
		!slices.Equal(scheduled.Lines[:3], asked.Lines) || !strings.Contains(scheduled.Lines[3], `"path":"/v2/deviceinfo"`) {
		t.Fatalf("scheduled batch: %+v", scheduled)
	}
	checkLines(scheduled.Lines)
	// The next one is five minutes away: nothing more goes up meanwhile.
	time.Sleep(300 * time.Millisecond)
	if n := len(e.stream(tmsproto.StreamLogECR)); n != 2 {
		t.Fatalf("%d records on up/log/ecr, want 2", n)
	}
}
