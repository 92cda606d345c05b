package tmsclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
)

// startBroker runs a real MQTT broker in-process on a free loopback port and returns it with
// its URL (ssl:// when tlsConf is set).
func startBroker(t *testing.T, tlsConf *tls.Config) (*mochi.Server, string) {
	t.Helper()
	b := testbroker.StartOpen(t, tlsConf)
	if tlsConf != nil {
		return b.Server, b.TLSURL
	}
	return b.Server, b.URL
}

// testCtx is a context bounded by the test's deadline, so a hang fails instead of blocking.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connectTest(t *testing.T, url string, opts Options) *Client {
	t.Helper()
	opts.Broker = url
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := Connect(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testLogger sends log output to the test log, shown only when the test fails, and drops what
// paho's goroutines might still log once the test is over.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// fakeDevice plays the terminal's side of the contract with a plain paho client: it
// publishes envelopes and answers commands. Only what the tests of the TMS side need.
type fakeDevice struct {
	t  *testing.T
	id string
	pc paho.Client

	mu   sync.Mutex
	seqs map[string]uint64
}

func newFakeDevice(t *testing.T, url, id string) *fakeDevice {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetOrderMatters(true)
	pc := paho.NewClient(o)
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(0) })
	return &fakeDevice{t: t, id: id, pc: pc, seqs: make(map[string]uint64)}
}

func (d *fakeDevice) publishRaw(topic string, payload []byte, retained bool) {
	d.t.Helper()
	tok := d.pc.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Errorf("device publish %s: %v", topic, tok.Error())
	}
}

// envelope encodes an uplink envelope.
func envelope(t testing.TB, stream string, seq uint64, kind string, body any) []byte {
	t.Helper()
	b, err := tmsproto.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tmsproto.Marshal(tmsproto.Envelope{V: tmsproto.Version, Stream: stream, Seq: seq, TS: 1_700_000_000_000 + int64(seq), Kind: kind, Body: b})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (d *fakeDevice) publishSeq(stream string, seq uint64, kind string, body any) {
	d.t.Helper()
	d.publishRaw(tmsproto.UpTopic(d.id, stream), envelope(d.t, stream, seq, kind, body), false)
}

// publish sends the next record of stream.
func (d *fakeDevice) publish(stream, kind string, body any) uint64 {
	d.t.Helper()
	d.mu.Lock()
	d.seqs[stream]++
	seq := d.seqs[stream]
	d.mu.Unlock()
	d.publishSeq(stream, seq, kind, body)
	return seq
}

func (d *fakeDevice) ack(a tmsproto.Ack) {
	d.t.Helper()
	d.publish(tmsproto.StreamAck, "ack", a)
}

// commands subscribes to the device's down/cmd and returns the raw commands received. The
// paho callback only forwards, so the test can publish answers from its own goroutine.
func (d *fakeDevice) commands() <-chan []byte {
	d.t.Helper()
	ch := make(chan []byte, 64)
	tok := d.pc.Subscribe(tmsproto.CmdTopic(d.id), 1, func(_ paho.Client, m paho.Message) {
		ch <- m.Payload()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Fatalf("device subscribe: %v", tok.Error())
	}
	return ch
}

// serve answers every command: verified ones with accepted, running 50, then the final ack
// from final; refused ones with rejected, carrying the ref when the id is unknown.
func (d *fakeDevice) serve(ctx context.Context, pub ed25519.PublicKey, kid string, final func(*tmsproto.Command) tmsproto.Ack) {
	d.t.Helper()
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{kid: pub})
	if err != nil {
		d.t.Fatal(err)
	}
	cmds := d.commands()
	var wg sync.WaitGroup
	// Cleanups run last-registered first: the goroutine is gone before the device disconnects.
	d.t.Cleanup(wg.Wait)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case raw := <-cmds:
				cmd, err := v.Verify(raw)
				if err != nil {
					d.ack(tmsproto.Ack{Ref: tmsproto.Ref(raw), State: tmsproto.StateRejected, Reason: tmsproto.ReasonOf(err), Message: err.Error()})
					continue
				}
				base := tmsproto.Ack{ID: cmd.ID, CmdSeq: cmd.Seq, Kind: cmd.Kind}
				a := base
				a.State = tmsproto.StateAccepted
				d.ack(a)
				a.State, a.Progress = tmsproto.StateRunning, 50
				d.ack(a)
				f := final(cmd)
				f.ID, f.CmdSeq, f.Kind = base.ID, base.CmdSeq, base.Kind
				d.ack(f)
			}
		}
	})
}

func newTestKey(t testing.TB, id string) SignKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return SignKey{ID: id, Key: priv}
}

// collector gathers uplinks handed to a watch handler.
type collector struct {
	mu  sync.Mutex
	got []Uplink
	ch  chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) add(u Uplink) {
	c.mu.Lock()
	c.got = append(c.got, u)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// waitFor returns the uplinks once there are at least n, failing the test at ctx's end.
func (c *collector) waitFor(ctx context.Context, t *testing.T, n int) []Uplink {
	t.Helper()
	for {
		c.mu.Lock()
		if len(c.got) >= n {
			out := append([]Uplink(nil), c.got...)
			c.mu.Unlock()
			return out
		}
		have := len(c.got)
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-ctx.Done():
			t.Fatalf("got %d uplinks, want %d", have, n)
		}
	}
}
