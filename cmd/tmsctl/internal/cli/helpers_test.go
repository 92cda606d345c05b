package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/internal/testpki"
)

// startBroker runs a real broker in-process with a plain listener and, when tlsConf is set, a
// TLS one; it returns their URLs.
func startBroker(t *testing.T, tlsConf *tls.Config) (plain, secure string) {
	t.Helper()
	b := testbroker.StartOpen(t, tlsConf)
	return b.URL, b.TLSURL
}

type run struct {
	stdout, stderr syncio.Buffer
	code           int
}

func testEnv(r *run, stdin string, tty bool, vars map[string]string) Env {
	return Env{
		Stdin:     strings.NewReader(stdin),
		Stdout:    &r.stdout,
		Stderr:    &r.stderr,
		Getenv:    func(k string) string { return vars[k] },
		StderrTTY: tty,
	}
}

// tmsctl runs the tool with args and returns its outputs and status.
func tmsctl(ctx context.Context, stdin string, args ...string) *run {
	r := &run{}
	r.code = Run(ctx, testEnv(r, stdin, false, nil), args, Commands())
	return r
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeAgent is the terminal's side of a command exchange, played with a plain paho client:
// it verifies each command and publishes the acks answer returns.
type fakeAgent struct {
	t   *testing.T
	pc  paho.Client
	dev string
	seq uint64
	got chan *tmsproto.Command
}

func startFakeAgent(ctx context.Context, t *testing.T, url, dev string, pub ed25519.PublicKey, kid string, answer func(*tmsproto.Command) []tmsproto.Ack) *fakeAgent {
	t.Helper()
	a := &fakeAgent{t: t, dev: dev, got: make(chan *tmsproto.Command, 16)}
	a.pc = paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(dev).SetOrderMatters(true))
	if tok := a.pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("agent connect: %v", tok.Error())
	}
	t.Cleanup(func() { a.pc.Disconnect(0) })
	if answer == nil {
		return a
	}
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{kid: pub})
	if err != nil {
		t.Fatal(err)
	}
	raws := make(chan []byte, 16)
	tok := a.pc.Subscribe(tmsproto.CmdTopic(dev), 1, func(_ paho.Client, m paho.Message) { raws <- m.Payload() })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("agent subscribe: %v", tok.Error())
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs before the disconnect above
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case raw := <-raws:
				cmd, err := v.Verify(raw)
				if err != nil {
					a.publish(tmsproto.StreamAck, tmsproto.Ack{Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected, Reason: tmsproto.ReasonOf(err)})
					continue
				}
				a.got <- cmd
				for _, ack := range answer(cmd) {
					ack.ID, ack.CmdSeq, ack.Kind = cmd.ID, cmd.Seq, cmd.Kind
					a.publish(tmsproto.StreamAck, ack)
				}
			}
		}
	})
	return a
}

func (a *fakeAgent) publish(stream string, body any) {
	a.seq++
	a.publishSeq(stream, a.seq, body)
}

func (a *fakeAgent) publishSeq(stream string, seq uint64, body any) {
	b, err := tmsproto.Marshal(body)
	if err != nil {
		a.t.Error(err)
		return
	}
	p, err := tmsproto.Marshal(tmsproto.Envelope{V: 1, Stream: stream, Seq: seq, TS: 1_700_000_000_000, Kind: "k", Body: b})
	if err != nil {
		a.t.Error(err)
		return
	}
	a.publishRaw(tmsproto.UpTopic(a.dev, stream), p, false)
}

func (a *fakeAgent) publishRaw(topic string, payload []byte, retained bool) {
	if tok := a.pc.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		a.t.Errorf("agent publish: %v", tok.Error())
	}
}

// waitFor polls until cond holds, failing at ctx's end.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// serverTLS makes a CA and a broker certificate for 127.0.0.1; it returns the broker's
// tls.Config and the CA as a PEM file.
func serverTLS(t *testing.T) (*tls.Config, string) {
	t.Helper()
	ca := testpki.NewCA(t)
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{ca.Server(t, "broker")}}, ca.File
}
