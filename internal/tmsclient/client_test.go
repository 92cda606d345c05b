package tmsclient

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

func TestWatchKeepsPerDeviceOrderAndFlagsBadRecords(t *testing.T) {
	_, url := startBroker(t, nil)
	c := connectTest(t, url, Options{CleanSession: true})
	ctx := testCtx(t)
	col := newCollector()
	sub, err := c.Watch(ctx, "+", nil, col.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	devs := []*fakeDevice{newFakeDevice(t, url, "T-1"), newFakeDevice(t, url, "T-2"), newFakeDevice(t, url, "T-3")}
	const per = 60
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() {
			for i := range per {
				d.publish(tmsproto.StreamEvent, "paper", map[string]any{"n": i})
			}
		})
	}
	wg.Wait()
	// A record that is not CBOR, and one whose envelope names another stream than its topic.
	devs[0].publishRaw(tmsproto.UpTopic("T-1", "event"), []byte("not cbor"), false)
	devs[0].publishRaw(tmsproto.UpTopic("T-1", "event"), envelope(t, "stats", 1, "stats", map[string]any{}), false)

	got := col.waitFor(ctx, t, len(devs)*per+2)
	last := map[string]uint64{}
	var bad []Uplink
	for _, u := range got {
		if u.Err != nil {
			bad = append(bad, u)
			continue
		}
		if u.Envelope.Seq != last[u.DeviceID]+1 {
			t.Fatalf("%s: seq %d after %d", u.DeviceID, u.Envelope.Seq, last[u.DeviceID])
		}
		last[u.DeviceID] = u.Envelope.Seq
		if u.Stream != "event" || u.Topic != tmsproto.UpTopic(u.DeviceID, "event") {
			t.Errorf("uplink %+v: wrong stream/topic", u)
		}
	}
	for _, d := range devs {
		if last[d.id] != per {
			t.Errorf("%s: last seq %d, want %d", d.id, last[d.id], per)
		}
	}
	if len(bad) != 2 {
		t.Fatalf("%d bad records, want 2", len(bad))
	}
	var de *tmsproto.DecodeError
	if !errors.As(bad[0].Err, &de) || string(bad[0].Raw) != "not cbor" {
		t.Errorf("first bad record: %v", bad[0].Err)
	}
	if !errors.Is(bad[1].Err, ErrStreamMismatch) {
		t.Errorf("second bad record: %v", bad[1].Err)
	}
}

func TestWatchStreamsAndRetained(t *testing.T) {
	_, url := startBroker(t, nil)
	dev := newFakeDevice(t, url, "T-9")
	// Retained before anyone watches: the watch must still see it, flagged.
	dev.publishRaw(tmsproto.UpTopic("T-9", tmsproto.StreamOnline), envelope(t, tmsproto.StreamOnline, 1, "online", tmsproto.Online{Online: true}), true)

	c := connectTest(t, url, Options{})
	ctx := testCtx(t)
	col := newCollector()
	sub, err := c.Watch(ctx, "T-9", []string{tmsproto.StreamOnline, "log/+"}, col.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	dev.publish(tmsproto.StreamStats, "stats", map[string]any{}) // not watched
	dev.publish(tmsproto.StreamLogECR, "ecr", map[string]any{"lines": []any{"a"}})
	// mochi forwards a message after its PUBACK and sends retained records apart from live
	// ones, so the online record may come after log/ecr and once more live if the
	// subscription came in between. What must hold: the retained copy comes, stats never.
	var got []Uplink
	for n := 1; ; n++ {
		got = col.waitFor(ctx, t, n)
		if slices.ContainsFunc(got, func(u Uplink) bool { return u.Stream == tmsproto.StreamLogECR }) &&
			slices.ContainsFunc(got, func(u Uplink) bool { return u.Stream == tmsproto.StreamOnline && u.Retained }) {
			break
		}
	}
	for _, u := range got {
		if u.Stream != tmsproto.StreamOnline && u.Stream != tmsproto.StreamLogECR {
			t.Errorf("unexpected uplink %+v", u)
		}
	}
}

func TestSendAndAwaitFollowsLifecycle(t *testing.T) {
	_, url := startBroker(t, nil)
	ctx := testCtx(t)
	key := newTestKey(t, "ops")
	dev := newFakeDevice(t, url, "T-1")
	dev.serve(ctx, key.Public(), key.ID, func(cmd *tmsproto.Command) tmsproto.Ack {
		var body map[string]any
		if err := tmsproto.Unmarshal(cmd.Body, &body); err != nil {
			return tmsproto.Ack{State: tmsproto.StateFailed, Reason: tmsproto.ReasonInvalidBody}
		}
		res, _ := tmsproto.Marshal(map[string]any{"echo": body["level"]})
		return tmsproto.Ack{State: tmsproto.StateSucceeded, Result: res}
	})

	seqPath := filepath.Join(t.TempDir(), "seq.json")
	seqs, err := NewSeqFile(seqPath)
	if err != nil {
		t.Fatal(err)
	}
	c := connectTest(t, url, Options{CleanSession: true})
	body, err := JSONToCBORBody([]byte(`{"level": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	sent, ack, err := c.SendAndAwait(ctx, "T-1", key, tmsproto.Command{Kind: "selftest", Body: body},
		func(a tmsproto.Ack) { states = append(states, fmt.Sprintf("%s/%d", a.State, a.Progress)) },
		WithSeq(seqs))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(sent.Command.ID) {
		t.Errorf("generated id %q, want 32 hex digits", sent.Command.ID)
	}
	if ack.ID != sent.Command.ID || ack.CmdSeq != sent.Command.Seq || ack.State != tmsproto.StateSucceeded {
		t.Errorf("final ack %+v for %+v", ack, sent.Command)
	}
	if want := []string{"accepted/0", "running/50", "succeeded/0"}; !slices.Equal(states, want) {
		t.Errorf("acks seen %v, want %v", states, want)
	}
	line, err := AckJSON(ack)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(line), `"result":{"echo":3}`) {
		t.Errorf("ack JSON %s lacks the result", line)
	}
	state, err := os.ReadFile(seqPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(state), fmt.Sprintf(`"T-1": %d`, sent.Command.Seq)) {
		t.Errorf("seq file %s does not record seq %d", state, sent.Command.Seq)
	}

	// A second command gets a higher seq from the same file.
	sent2, ack2, err := c.SendAndAwait(ctx, "T-1", key, tmsproto.Command{Kind: "reboot"}, nil, WithSeq(seqs))
	if err != nil {
		t.Fatal(err)
	}
	if sent2.Command.Seq <= sent.Command.Seq || ack2.ID != sent2.Command.ID {
		t.Errorf("second command seq %d (first %d), ack %+v", sent2.Command.Seq, sent.Command.Seq, ack2)
	}
}

func TestAwaitMatchesRejectionByRef(t *testing.T) {
	_, url := startBroker(t, nil)
	ctx := testCtx(t)
	key := newTestKey(t, "ops")
	dev := newFakeDevice(t, url, "T-1")
	dev.serve(ctx, key.Public(), key.ID, func(*tmsproto.Command) tmsproto.Ack {
		return tmsproto.Ack{State: tmsproto.StateSucceeded}
	})
	c := connectTest(t, url, Options{})
	forger := newTestKey(t, "ops") // same key id, different key: the signature cannot verify
	sent, err := c.Sign("T-1", forger, tmsproto.Command{Kind: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.WatchAcks(ctx, "T-1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.SendRaw(ctx, "T-1", sent.Raw); err != nil {
		t.Fatal(err)
	}
	ack, err := w.Await(ctx, sent.Match(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ack.State != tmsproto.StateRejected || ack.Reason != tmsproto.ReasonBadSignature || ack.ID != "" {
		t.Errorf("ack %+v, want rejected bad_signature without id", ack)
	}
}

func TestAwaitAckReturnsDuplicateFinal(t *testing.T) {
	_, url := startBroker(t, nil)
	ctx := testCtx(t)
	dev := newFakeDevice(t, url, "T-1")
	c := connectTest(t, url, Options{})
	w, err := c.WatchAcks(ctx, "T-1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// Acks of another command and an undecodable one are passed over.
	dev.ack(tmsproto.Ack{ID: "other", State: tmsproto.StateSucceeded})
	dev.publishSeq(tmsproto.StreamAck, 99, "ack", map[string]any{"state": "exploded", "id": "c1"})
	dev.ack(tmsproto.Ack{ID: "c1", State: tmsproto.StateSucceeded, Duplicate: true})
	ack, err := w.Await(ctx, AckMatch{ID: "c1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate || ack.ID != "c1" {
		t.Errorf("ack %+v", ack)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := w.Await(short, AckMatch{ID: "never"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("await without ack: %v, want deadline exceeded", err)
	}
}

// Overlapping watches share one broker subscription, so a record reaches each watch once; when
// the broad watch stops the narrow one keeps receiving.
func TestOverlappingWatches(t *testing.T) {
	_, url := startBroker(t, nil)
	ctx := testCtx(t)
	dev := newFakeDevice(t, url, "T-1")
	c := connectTest(t, url, Options{})
	broad, narrow := newCollector(), newCollector()
	bsub, err := c.Watch(ctx, "+", nil, broad.add)
	if err != nil {
		t.Fatal(err)
	}
	nsub, err := c.Watch(ctx, "T-1", []string{tmsproto.StreamAck}, narrow.add)
	if err != nil {
		t.Fatal(err)
	}
	defer nsub.Stop()
	c.subMu.Lock()
	active := len(c.active)
	c.subMu.Unlock()
	if active != 1 {
		t.Errorf("%d broker subscriptions, want 1", active)
	}
	for range 5 {
		dev.ack(tmsproto.Ack{ID: "x", State: tmsproto.StateAccepted})
	}
	narrow.waitFor(ctx, t, 5)
	got := broad.waitFor(ctx, t, 5)
	bsub.Stop()
	if len(got) != 5 {
		t.Errorf("broad watch got %d records, want 5", len(got))
	}
	dev.ack(tmsproto.Ack{ID: "x", State: tmsproto.StateSucceeded})
	if got := narrow.waitFor(ctx, t, 6); got[5].Envelope.Seq != 6 {
		t.Errorf("after the broad watch stopped: seq %d", got[5].Envelope.Seq)
	}
	select {
	case <-bsub.Done():
	default:
		t.Error("Done not closed after Stop")
	}
}

func TestReconnectRestoresSubscriptions(t *testing.T) {
	srv, url := startBroker(t, nil)
	ctx := testCtx(t)
	key := newTestKey(t, "ops")
	dev := newFakeDevice(t, url, "T-1")
	c := connectTest(t, url, Options{ClientID: "tms-reconnect", CleanSession: true})
	col := newCollector()
	sub, err := c.Watch(ctx, "T-1", []string{tmsproto.StreamEvent}, col.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	dev.publish(tmsproto.StreamEvent, "e", map[string]any{})
	col.waitFor(ctx, t, 1)

	cl, ok := srv.Clients.Get("tms-reconnect")
	if !ok {
		t.Fatal("client not known to the broker")
	}
	cl.Stop(errors.New("kicked by the test"))

	// Records published while the client is away are lost with a clean session, so keep
	// publishing until one arrives through the restored subscription.
	for {
		dev.publish(tmsproto.StreamEvent, "e", map[string]any{})
		select {
		case <-col.ch:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no record after the reconnect")
		}
		col.mu.Lock()
		n := len(col.got)
		col.mu.Unlock()
		if n >= 2 {
			break
		}
	}
	// And commands still go out.
	dev.serve(ctx, key.Public(), key.ID, func(*tmsproto.Command) tmsproto.Ack {
		return tmsproto.Ack{State: tmsproto.StateSucceeded}
	})
	if _, ack, err := c.SendAndAwait(ctx, "T-1", key, tmsproto.Command{Kind: "reboot"}, nil); err != nil || ack.State != tmsproto.StateSucceeded {
		t.Fatalf("send after reconnect: %+v, %v", ack, err)
	}
}

func TestSignFillsInAndValidates(t *testing.T) {
	_, url := startBroker(t, nil)
	c := connectTest(t, url, Options{})
	key := newTestKey(t, "ops")
	v, err := tmsproto.NewVerifier(map[string]ed25519.PublicKey{"ops": key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Unix()
	sent, err := c.Sign("T-1", key, tmsproto.Command{ID: "mine", Seq: 7, Kind: "reboot", Expires: 42})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := v.Verify(sent.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.ID != "mine" || cmd.Seq != 7 || cmd.Expires != 42 || cmd.Issued < before || string(cmd.Body) != "\xa0" {
		t.Errorf("signed command %+v", cmd)
	}

	ctx := testCtx(t)
	for name, tc := range map[string]struct {
		dev string
		key SignKey
		cmd tmsproto.Command
	}{
		"device id":   {dev: "bad/id", key: key, cmd: tmsproto.Command{Kind: "k"}},
		"no kind":     {dev: "T-1", key: key},
		"no key":      {dev: "T-1", cmd: tmsproto.Command{Kind: "k"}},
		"long id":     {dev: "T-1", key: key, cmd: tmsproto.Command{Kind: "k", ID: strings.Repeat("x", 129)}},
		"array body":  {dev: "T-1", key: key, cmd: tmsproto.Command{Kind: "k", Body: []byte{0x80}}},
		"broken body": {dev: "T-1", key: key, cmd: tmsproto.Command{Kind: "k", Body: []byte{0xa1, 0x61}}},
		"huge body":   {dev: "T-1", key: key, cmd: tmsproto.Command{Kind: "k", Body: hugeBody(t)}},
	} {
		_, err := c.Send(ctx, tc.dev, tc.key, tc.cmd)
		var ie *InputError
		if !errors.As(err, &ie) {
			t.Errorf("%s: %v, want an InputError", name, err)
		}
	}
	var ie *InputError
	if err := c.SendRaw(ctx, "a b", []byte{1}); !errors.As(err, &ie) {
		t.Errorf("SendRaw to a bad device id: %v", err)
	}
	if _, err := c.Watch(ctx, "T-1", []string{"log/#/x"}, func(Uplink) {}); !errors.As(err, &ie) {
		t.Errorf("watch with a bad stream filter: %v", err)
	}
}

func hugeBody(t *testing.T) []byte {
	b, err := tmsproto.Marshal(map[string]any{"blob": make([]byte, tmsproto.MaxCommandSize)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConnectErrors(t *testing.T) {
	ctx := testCtx(t)
	var ie *InputError
	for _, broker := range []string{"http://x:1", "tcp://", "::"} {
		if _, err := Connect(ctx, Options{Broker: broker}); !errors.As(err, &ie) {
			t.Errorf("Connect(%q): %v, want an InputError", broker, err)
		}
	}
	tlsConf, err := TLSFiles{Insecure: true}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, Options{Broker: "tcp://127.0.0.1:1", TLS: tlsConf}); !errors.As(err, &ie) {
		t.Errorf("TLS with tcp://: %v, want an InputError", err)
	}
	// Nothing listens on a port just released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	if _, err := Connect(ctx, Options{Broker: "tcp://" + l.Addr().String()}); err == nil || errors.As(err, &ie) {
		t.Errorf("connect to a closed port: %v", err)
	}
}

func TestClosedClient(t *testing.T) {
	_, url := startBroker(t, nil)
	c := connectTest(t, url, Options{})
	ctx := testCtx(t)
	col := newCollector()
	sub, err := c.Watch(ctx, "+", nil, col.add)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-sub.Done()
	if _, err := c.Watch(ctx, "+", nil, col.add); !errors.Is(err, ErrClosed) {
		t.Errorf("watch after close: %v", err)
	}
	if err := c.SendRaw(ctx, "T-1", []byte{0xa0}); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
}
