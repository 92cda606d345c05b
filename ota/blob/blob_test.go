package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/transfer"
)

const dev = "DEV-1"

func testData(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// network is the innermost fake: it stands for the broker between a Client and a Server. A
// request goes to the server on one worker goroutine; every answer passes through mangle,
// which decides what (if anything, and in which order) reaches the client.
type request struct {
	tid     string
	payload []byte
}

type network struct {
	srv    *Server
	client *Client
	reqs   chan request

	mu     sync.Mutex
	mangle func(payload []byte) [][]byte
	seen   []Request
}

func newNetwork(t *testing.T, files map[string][]byte) *network {
	t.Helper()
	n := &network{reqs: make(chan request, 64)}
	n.srv = &Server{
		Open: func(tid string) (io.ReaderAt, int64, bool) {
			b, ok := files[tid]
			return bytes.NewReader(b), int64(len(b)), ok
		},
		Publish: func(_ context.Context, topic string, payload []byte) error {
			_, tid, up, ok := tmsproto.ParseBlobTopic(topic)
			if !ok || up {
				t.Errorf("answer on %q", topic)
			}
			n.mu.Lock()
			m := n.mangle
			n.mu.Unlock()
			out := [][]byte{payload}
			if m != nil {
				out = m(payload)
			}
			for _, p := range out {
				n.client.Deliver(tid, p)
			}
			return nil
		},
	}
	n.client = NewClient(n, slog.New(slog.DiscardHandler))
	n.client.Stall = 30 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-n.reqs:
				if err := n.srv.Handle(ctx, tmsproto.BlobUpTopic(dev, r.tid), r.payload); err != nil {
					t.Errorf("handle: %v", err)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func (n *network) PublishBlob(_ context.Context, tid string, payload []byte) error {
	req, err := DecodeRequest(tid, payload)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.seen = append(n.seen, req)
	n.mu.Unlock()
	n.reqs <- request{tid, payload}
	return nil
}

func (n *network) setMangle(m func([]byte) [][]byte) {
	n.mu.Lock()
	n.mangle = m
	n.mu.Unlock()
}

func (n *network) requests() []Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Request(nil), n.seen...)
}

func runTransfer(t *testing.T, c *Client, tid string, data []byte) (transfer.Checkpoint, error) {
	t.Helper()
	sum := sha256.Sum256(data)
	dir := t.TempDir()
	tr := &transfer.Transfer{
		Path: filepath.Join(dir, "f"), Size: int64(len(data)), SHA256: sum[:],
		Source: c.Source(tid, int64(len(data))), State: transfer.FileState{Path: filepath.Join(dir, "cp")},
		Block: BlockSize, Retry: backoff.Policy{Base: time.Millisecond, Cap: 10 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := tr.Run(ctx)
	if err == nil {
		got, rerr := os.ReadFile(tr.Path)
		if rerr != nil || !bytes.Equal(got, data) {
			t.Fatalf("transferred file differs (%v)", rerr)
		}
	}
	return cp, err
}

func TestTransferInOrder(t *testing.T) {
	data := testData(1<<20+4321, 1)
	tid := ID(digest(data))
	n := newNetwork(t, map[string][]byte{tid: data})
	if _, err := runTransfer(t, n.client, tid, data); err != nil {
		t.Fatal(err)
	}
	st := n.client.Stats()
	blocks := uint64((len(data) + BlockSize - 1) / BlockSize)
	if st.Requests != blocks || st.Blocks != blocks || st.Bytes != uint64(len(data)) || st.Duplicates+st.Dropped+st.Reasks+st.Malformed != 0 {
		t.Fatalf("stats %+v for %d blocks", st, blocks)
	}
	// Each request asks for the next block; never more than a window ahead.
	for i, r := range n.requests() {
		if r.Offset != uint64(i*BlockSize) || r.Length > BlockSize {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
}

func TestLostAnswersAreAskedAgain(t *testing.T) {
	data := testData(600<<10, 2)
	n := newNetwork(t, map[string][]byte{"lossy": data})
	// Long enough that only real losses (not a slow machine) cause stalls.
	n.client.Stall = 200 * time.Millisecond
	var i int
	n.setMangle(func(p []byte) [][]byte {
		i++
		if i%4 == 2 {
			return nil
		}
		return [][]byte{p}
	})
	if _, err := runTransfer(t, n.client, "lossy", data); err != nil {
		t.Fatal(err)
	}
	st := n.client.Stats()
	if st.Reasks == 0 || st.Bytes != uint64(len(data)) {
		t.Fatalf("stats %+v", st)
	}
	// After a stall only the missing block is asked again, not the whole window.
	blocks := uint64((len(data) + BlockSize - 1) / BlockSize)
	if st.Requests != blocks+st.Reasks {
		t.Fatalf("%d requests for %d blocks and %d stalls", st.Requests, blocks, st.Reasks)
	}
}

func TestDuplicatedAndReorderedAnswers(t *testing.T) {
	data := testData(700<<10+3, 3)
	n := newNetwork(t, map[string][]byte{"messy": data})
	var held []byte
	n.setMangle(func(p []byte) [][]byte {
		// Every answer twice, and each pair of answers swapped.
		if held == nil {
			held = p
			return nil
		}
		out := [][]byte{p, held, held, p}
		held = nil
		return out
	})
	if _, err := runTransfer(t, n.client, "messy", data); err != nil {
		t.Fatal(err)
	}
	st := n.client.Stats()
	if st.Duplicates == 0 || st.Bytes != uint64(len(data)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestUnknownTransferIsPermanent(t *testing.T) {
	n := newNetwork(t, nil)
	_, err := runTransfer(t, n.client, "nosuch", []byte("whatever"))
	var se *ServerError
	if !errors.Is(err, transfer.ErrPermanent) || !errors.As(err, &se) || se.Msg != ErrTextUnknown {
		t.Fatalf("err %v", err)
	}
	if reqs := n.requests(); len(reqs) != 1 {
		t.Fatalf("a permanent failure was asked again: %+v", reqs)
	}
}

func TestServerFileOfOtherSize(t *testing.T) {
	data := testData(100<<10, 4)
	n := newNetwork(t, map[string][]byte{"big": data, "small": data[:50<<10]})
	if _, err := runTransfer(t, n.client, "big", data[:80<<10]); manifest.ReasonOf(err) != manifest.ReasonTooLarge {
		t.Fatalf("larger file: %v", err)
	}
	if _, err := runTransfer(t, n.client, "small", data[:80<<10]); manifest.ReasonOf(err) != manifest.ReasonTruncated {
		t.Fatalf("smaller file: %v", err)
	}
}

func TestOpenAtOffsetAndReopen(t *testing.T) {
	// Larger than the window can hold ahead: the first reader cannot already have it all.
	data := testData(2<<20, 5)
	n := newNetwork(t, map[string][]byte{"f": data})
	src := n.client.Source("f", int64(len(data)))
	ctx := context.Background()
	const off = 100000
	r1, err := src.Open(ctx, off)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(r1, head); err != nil || !bytes.Equal(head, data[off:off+10]) {
		t.Fatalf("read %v", err)
	}
	// A second Open of the same transfer ends the first reader.
	r2, err := src.Open(ctx, off)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	var rest []byte
	for err == nil {
		var b [7000]byte
		var k int
		k, err = r1.Read(b[:])
		rest = append(rest, b[:k]...)
	}
	// The old reader hands out what it had and then stops.
	if !errors.Is(err, ErrReplaced) || !bytes.HasPrefix(data[off+10:], rest) {
		t.Fatalf("old reader: %d bytes, %v", len(rest), err)
	}
	r1.Close()
	got, err := io.ReadAll(r2)
	if err != nil || !bytes.Equal(got, data[off:]) {
		t.Fatalf("second reader: %d bytes, %v", len(got), err)
	}
	if _, err := src.Open(ctx, int64(len(data))+1); !errors.Is(err, transfer.ErrPermanent) {
		t.Fatalf("open past the end: %v", err)
	}
}

// stuckPublisher accepts requests and never answers.
type stuckPublisher struct{}

func (stuckPublisher) PublishBlob(context.Context, string, []byte) error { return nil }

func TestDeliverNeverBlocks(t *testing.T) {
	c := NewClient(stuckPublisher{}, slog.New(slog.DiscardHandler))
	c.Deliver("none", []byte("x"))
	r, err := c.Source("t", 1<<20).Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Nobody reads: the queue fills, the rest is dropped, Deliver returns every time.
	const sent = 100
	for range sent {
		c.Deliver("t", []byte("y"))
	}
	st := c.Stats()
	queued := uint64(4 * DefaultWindow)
	if st.Stale != 1 || st.Dropped != sent-queued {
		t.Fatalf("stats %+v", st)
	}
	// What was queued is read as malformed and skipped; then the reader waits until ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	r2, err := c.Source("t2", 10).Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := r2.Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	r2.Close()
	c.Deliver("t2", []byte("z"))
	if st := c.Stats(); st.Stale != 2 {
		t.Fatalf("closed transfer still receives: %+v", st)
	}
}

func TestPublishErrorIsTransient(t *testing.T) {
	data := testData(200<<10, 6)
	n := newNetwork(t, map[string][]byte{"f": data})
	fp := &failingPublisher{next: n, failEvery: 3}
	n.client = NewClient(fp, slog.New(slog.DiscardHandler))
	n.client.Stall = 30 * time.Millisecond
	if _, err := runTransfer(t, n.client, "f", data); err != nil {
		t.Fatal(err)
	}
}

type failingPublisher struct {
	next      Publisher
	failEvery int
	mu        sync.Mutex
	n         int
}

var errOffline = errors.New("offline")

func (f *failingPublisher) PublishBlob(ctx context.Context, tid string, payload []byte) error {
	f.mu.Lock()
	f.n++
	fail := f.n%f.failEvery == 0
	f.mu.Unlock()
	if fail {
		return errOffline
	}
	return f.next.PublishBlob(ctx, tid, payload)
}

func TestServerAnswers(t *testing.T) {
	data := testData(200<<10+5, 7)
	var got []Block
	var topics []string
	srv := &Server{
		Open: func(tid string) (io.ReaderAt, int64, bool) {
			return bytes.NewReader(data), int64(len(data)), tid == "f"
		},
		Publish: func(_ context.Context, topic string, payload []byte) error {
			b, err := DecodeBlock(payload)
			if err != nil {
				t.Fatalf("server sent a block that does not decode: %v", err)
			}
			got = append(got, b)
			topics = append(topics, topic)
			return nil
		},
	}
	ctx := context.Background()
	req := func(tid string, off, length uint64) []byte {
		p, err := EncodeRequest(tid, 1, time.Now(), Request{Offset: off, Length: length})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A long request: answered in blocks of at most 64 KiB, cut at the end of the file.
	if err := srv.Handle(ctx, tmsproto.BlobUpTopic(dev, "f"), req("f", 10, 1<<20)); err != nil {
		t.Fatal(err)
	}
	var joined []byte
	for i, b := range got {
		if len(b.Data) > BlockSize || b.Size != uint64(len(data)) || b.Offset != uint64(10+len(joined)) || topics[i] != tmsproto.BlobDownTopic(dev, "f") {
			t.Fatalf("block %d: offset %d, %d bytes, size %d on %s", i, b.Offset, len(b.Data), b.Size, topics[i])
		}
		joined = append(joined, b.Data...)
	}
	if len(got) != 4 || !bytes.Equal(joined, data[10:]) {
		t.Fatalf("%d blocks, %d bytes", len(got), len(joined))
	}

	for _, c := range []struct {
		name, tid string
		off       uint64
		want      string
	}{
		{"unknown", "g", 0, ErrTextUnknown},
		{"past the end", "f", uint64(len(data)), ErrTextPastEnd},
	} {
		got = nil
		if err := srv.Handle(ctx, tmsproto.BlobUpTopic(dev, c.tid), req(c.tid, c.off, 10)); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Error != c.want || len(got[0].Data) != 0 {
			t.Fatalf("%s: %+v", c.name, got)
		}
	}

	got = nil
	if err := srv.Handle(ctx, tmsproto.BlobUpTopic(dev, "f"), req("other", 0, 10)); !errors.Is(err, ErrDecode) {
		t.Fatalf("request of another transfer: %v", err)
	}
	if err := srv.Handle(ctx, tmsproto.BlobDownTopic(dev, "f"), req("f", 0, 10)); !errors.Is(err, ErrBadTopic) {
		t.Fatalf("down topic: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("bad requests answered: %+v", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	enc := func(v any) []byte {
		b, err := tmsproto.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := Block{Offset: 0, Data: []byte("abc"), Size: 3}
	if b, err := DecodeBlock(enc(good)); err != nil || !bytes.Equal(b.Data, good.Data) {
		t.Fatalf("good block: %v", err)
	}
	for name, payload := range map[string][]byte{
		"unknown field":  enc(map[string]any{"offset": 0, "data": []byte("a"), "size": 1, "extra": 1}),
		"data past size": enc(Block{Offset: 2, Data: []byte("abc"), Size: 4}),
		"offset > size":  enc(Block{Offset: 5, Data: []byte("a"), Size: 4}),
		"empty":          enc(Block{Offset: 0, Size: 4}),
		"error and data": enc(Block{Data: []byte("a"), Size: 1, Error: "x"}),
		"long error":     enc(Block{Error: string(make([]byte, MaxErrorLen+1))}),
		"too much data":  enc(Block{Data: make([]byte, BlockSize+1), Size: BlockSize + 1}),
		"oversized":      make([]byte, maxBlockMessage+1),
		"not cbor":       []byte("hello"),
		"dup key":        {0xa2, 0x64, 's', 'i', 'z', 'e', 0x01, 0x64, 's', 'i', 'z', 'e', 0x02},
	} {
		if _, err := DecodeBlock(payload); !errors.Is(err, ErrDecode) {
			t.Errorf("block %s: %v", name, err)
		}
	}

	env := func(stream, kind string, body any) []byte {
		return enc(tmsproto.Envelope{V: tmsproto.Version, Stream: stream, Seq: 1, Kind: kind, Body: enc(body)})
	}
	if r, err := DecodeRequest("t", env("blob/t", KindRequest, Request{Offset: 7, Length: 9})); err != nil || r != (Request{7, 9}) {
		t.Fatalf("good request: %+v %v", r, err)
	}
	for name, payload := range map[string][]byte{
		"other stream": env("blob/u", KindRequest, Request{Length: 1}),
		"other kind":   env("blob/t", "blob.x", Request{Length: 1}),
		"zero length":  env("blob/t", KindRequest, Request{Length: 0}),
		"huge length":  env("blob/t", KindRequest, Request{Length: MaxRequestLength + 1}),
		"extra field":  env("blob/t", KindRequest, map[string]any{"offset": 0, "length": 1, "x": 1}),
		"oversized":    env("blob/t", KindRequest, map[string]any{"offset": 0, "length": string(make([]byte, 600))}),
	} {
		if _, err := DecodeRequest("t", payload); !errors.Is(err, ErrDecode) {
			t.Errorf("request %s: %v", name, err)
		}
	}
}

func TestIDAndTopics(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	id := ID(sum[:])
	if len(id) != 32 || ValidID(id) != nil {
		t.Fatalf("id %q", id)
	}
	for _, c := range []struct {
		topic   string
		dev, id string
		up, ok  bool
	}{
		{tmsproto.BlobUpTopic("D1", id), "D1", id, true, true},
		{tmsproto.BlobDownTopic("D1", "a_b-C"), "D1", "a_b-C", false, true},
		{"tms/v1/D1/up/blob/", "", "", false, false},
		{"tms/v1/D1/up/blob/a/b", "", "", false, false},
		{"tms/v1/D1/down/cmd", "", "", false, false},
		{"tms/v1/D 1/up/blob/a", "", "", false, false},
		{"x/v1/D1/up/blob/a", "", "", false, false},
	} {
		d, tid, up, ok := tmsproto.ParseBlobTopic(c.topic)
		if d != c.dev || tid != c.id || up != c.up || ok != c.ok {
			t.Errorf("%q: %q %q %v %v", c.topic, d, tid, up, ok)
		}
	}
}

func digest(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
