package tmslink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/transfer"
)

// patternFile is a file of any size that is computed, not stored, so that a 100 MiB transfer
// does not put 100 MiB in the test's own memory.
type patternFile struct{ size int64 }

func (p patternFile) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.size-off))
	for i := range n {
		x := uint64(off) + uint64(i)
		b[i] = byte((x * 0x9E3779B1) >> 24)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (p patternFile) sum(tb testing.TB) []byte {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(p, 0, p.size)); err != nil {
		tb.Fatal(err)
	}
	return h.Sum(nil)
}

// tmsBlobServer is the TMS side: a paho client serving files with a blob.Server, the way
// tmsctl serve does. It records the offsets it was asked for.
type tmsBlobServer struct {
	c       mqtt.Client
	srv     *blob.Server
	reqs    chan mqtt.Message
	done    chan struct{}
	mu      sync.Mutex
	asked   []uint64
	gate    chan struct{} // non-nil: requests wait for it to close
	drop    bool          // requests that waited at the gate are not answered
	waiting atomic.Int64  // requests waiting at the gate
}

// pause holds requests until resume.
func (s *tmsBlobServer) pause() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

// resume lets requests through again; drop forgets those that waited, as a TMS that
// restarted would.
func (s *tmsBlobServer) resume(drop bool) {
	s.mu.Lock()
	s.drop = drop
	close(s.gate)
	s.gate = nil
	s.mu.Unlock()
}

func startBlobServer(tb testing.TB, br *testbroker.Broker, files map[string]io.ReaderAt, sizes map[string]int64) *tmsBlobServer {
	tb.Helper()
	s := &tmsBlobServer{reqs: make(chan mqtt.Message, 64), done: make(chan struct{})}
	// The paho handler must not wait for PUBACKs, so requests are served on a goroutine.
	onReq := func(_ mqtt.Client, m mqtt.Message) { s.reqs <- m }
	s.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID("tms-blob-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetUsername(br.TMSUser()).SetPassword(br.TMSPassword()).SetCleanSession(true).SetOrderMatters(true).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe("tms/v1/+/up/blob/+", 1, onReq) }))
	if tok := s.c.Connect(); tok.Wait() && tok.Error() != nil {
		tb.Fatal(tok.Error())
	}
	s.srv = &blob.Server{
		Open: func(tid string) (io.ReaderAt, int64, bool) {
			f, ok := files[tid]
			return f, sizes[tid], ok
		},
		Publish: func(ctx context.Context, topic string, payload []byte) error {
			tok := s.c.Publish(topic, 1, false, payload)
			select {
			case <-tok.Done():
				return tok.Error()
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Second):
				return errors.New("no PUBACK")
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-s.reqs:
				s.mu.Lock()
				gate := s.gate
				s.mu.Unlock()
				if gate != nil {
					s.waiting.Add(1)
					select {
					case <-gate:
					case <-ctx.Done():
						return
					}
					s.mu.Lock()
					drop := s.drop
					s.mu.Unlock()
					if drop {
						continue
					}
				}
				_, tid, _, _ := tmsproto.ParseBlobTopic(m.Topic())
				if r, err := blob.DecodeRequest(tid, m.Payload()); err == nil {
					s.mu.Lock()
					s.asked = append(s.asked, r.Offset)
					s.mu.Unlock()
				}
				// Errors (the broker going away mid-answer) are recovered by the client.
				_ = s.srv.Handle(ctx, m.Topic(), m.Payload())
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-s.done
		s.c.Disconnect(100)
	})
	return s
}

func (s *tmsBlobServer) offsets() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.asked...)
}

// blobLink runs a real Link whose blob messages feed a blob.Client.
type blobLink struct {
	link   *Link
	client *blob.Client
	blobs  atomic.Int64
}

func startBlobLink(tb testing.TB, br *testbroker.Broker, dev string) *blobLink {
	tb.Helper()
	db, err := store.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	commit := store.NewCommitter(db)
	out, err := outbox.Open(db, commit, outbox.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	bl := &blobLink{}
	link, err := New(Options{DeviceID: dev, Broker: br.URL(), Password: br.DevicePassword(dev), Inflight: 4,
		KeepAlive: 5 * time.Second, Backoff: backoff.Policy{Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond},
		DB: db, Commit: commit, Outbox: out, Inbox: &recordingInbox{}, Logger: slog.New(slog.DiscardHandler),
		OnBlob: func(tid string, payload []byte) {
			bl.blobs.Add(1)
			bl.client.Deliver(tid, payload)
		}})
	if err != nil {
		tb.Fatal(err)
	}
	bl.link = link
	bl.client = blob.NewClient(link, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		commit.Close()
		db.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for !link.Status().Connected {
		if time.Now().After(deadline) {
			tb.Fatal("link did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return bl
}

func newBlobTransfer(dir string, c *blob.Client, tid string, size int64, sum []byte) *transfer.Transfer {
	return &transfer.Transfer{
		Path: filepath.Join(dir, "file"), Size: size, SHA256: sum,
		Source: c.Source(tid, size), State: transfer.FileState{Path: filepath.Join(dir, "cp")},
		Retry:  backoff.Policy{Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	}
}

func TestPublishBlobNotConnected(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := New(Options{DeviceID: "D1", Broker: "tcp://127.0.0.1:1", DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.PublishBlob(context.Background(), "t", []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err %v", err)
	}
}

// TestBlobTransferOverBroker pulls a multi-MiB file through a real broker with the link on
// one side and the blob server on the other, and stops the broker a third of the way in while
// requests are waiting to be answered. After the restart the transfer carries on from where
// it was.
func TestBlobTransferOverBroker(t *testing.T) {
	const dev = "BLOB-1"
	br := testbroker.Start(t, testbroker.Options{Devices: []string{dev}})
	file := patternFile{size: 3<<20 + 12345}
	sum := file.sum(t)
	tid := blob.ID(sum)
	srv := startBlobServer(t, br, map[string]io.ReaderAt{tid: file}, map[string]int64{tid: file.size})
	bl := startBlobLink(t, br, dev)
	// Answers queued or requests lost in the cut are asked for again after this.
	bl.client.Stall = 500 * time.Millisecond

	tr := newBlobTransfer(t.TempDir(), bl.client, tid, file.size, sum)
	third := make(chan int64, 1)
	var once sync.Once
	tr.Progress = func(done, total int64) {
		if done >= total/3 {
			once.Do(func() {
				srv.pause()
				third <- done
			})
		}
	}
	result := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := tr.Run(ctx)
		result <- err
	}()
	cutAt := <-third
	before := len(srv.offsets())
	waitUntil(t, "a request waiting at the server", func() bool { return srv.waiting.Load() > 0 })
	br.Stop()
	// The TMS forgets what it was asked meanwhile; the client asks again.
	srv.resume(true)
	br.Restart(t)
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(tr.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, file.size)
	if _, err := file.ReadAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("transferred file differs")
	}
	// After the cut nothing before the checkpoint was asked for again.
	for _, off := range srv.offsets()[before:] {
		if int64(off) < cutAt {
			t.Fatalf("offset %d asked again after the cut at %d", off, cutAt)
		}
	}
	st := bl.client.Stats()
	if bl.link.Status().Connects < 2 || st.Bytes != uint64(file.size) {
		t.Fatalf("link %+v, blob stats %+v", bl.link.Status(), st)
	}
	t.Logf("blob stats %+v, %d messages through OnBlob", st, bl.blobs.Load())
}

// TestBlobUnknownTransferOverBroker: the server's error answer travels back and ends the
// transfer at once.
func TestBlobUnknownTransferOverBroker(t *testing.T) {
	const dev = "BLOB-2"
	br := testbroker.Start(t, testbroker.Options{Devices: []string{dev}})
	startBlobServer(t, br, nil, nil)
	bl := startBlobLink(t, br, dev)
	tr := newBlobTransfer(t.TempDir(), bl.client, "nosuchfile", 100, make([]byte, 32))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := tr.Run(ctx)
	var se *blob.ServerError
	if !errors.As(err, &se) || se.Msg != blob.ErrTextUnknown || !errors.Is(err, transfer.ErrPermanent) {
		t.Fatalf("err %v", err)
	}
}

// BenchmarkMQTTTransfer measures the blob path end to end through a real broker on loopback:
// "read" streams the Source to io.Discard (the protocol alone), "transfer" runs the transfer
// to disk with its checkpoint every 64 KiB (what the agent does).
func BenchmarkMQTTTransfer(b *testing.B) {
	const dev = "BLOB-B"
	br := testbroker.Start(b, testbroker.Options{Devices: []string{dev}})
	file := patternFile{size: 16 << 20}
	sum := file.sum(b)
	tid := blob.ID(sum)
	startBlobServer(b, br, map[string]io.ReaderAt{tid: file}, map[string]int64{tid: file.size})
	bl := startBlobLink(b, br, dev)
	b.Run("read", func(b *testing.B) {
		b.SetBytes(file.size)
		for b.Loop() {
			r, err := bl.client.Source(tid, file.size).Open(context.Background(), 0)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, r)
			r.Close()
			if err != nil || n != file.size {
				b.Fatalf("%d bytes, %v", n, err)
			}
		}
	})
	b.Run("transfer", func(b *testing.B) {
		b.SetBytes(file.size)
		for b.Loop() {
			tr := newBlobTransfer(b.TempDir(), bl.client, tid, file.size, sum)
			if _, err := tr.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRawPublish is the baseline for BenchmarkMQTTTransfer: the same bytes as a plain
// stream of 64 KiB QoS 1 messages from one publisher to one subscriber on the same broker,
// with a window of unacknowledged publishes like the blob client's (4) and a wide one (32).
func BenchmarkRawPublish(b *testing.B) {
	const dev = "BLOB-R"
	const size = 16 << 20
	br := testbroker.Start(b, testbroker.Options{Devices: []string{dev}})
	var received atomic.Int64
	got := make(chan struct{}, 1)
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID(dev).SetUsername(dev).
		SetPassword(br.DevicePassword(dev)).SetCleanSession(true).SetOrderMatters(true))
	if tok := sub.Connect(); tok.Wait() && tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	topic := tmsproto.BlobDownTopic(dev, "raw")
	if tok := sub.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		if received.Add(int64(len(m.Payload()))) >= size {
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}); tok.Wait() && tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID("tms-raw").SetUsername(br.TMSUser()).
		SetPassword(br.TMSPassword()).SetCleanSession(true))
	if tok := pub.Connect(); tok.Wait() && tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	payload := make([]byte, blob.BlockSize)
	for _, window := range []int{4, 32} {
		b.Run("window"+strconv.Itoa(window), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				received.Store(0)
				slots := make(chan struct{}, window)
				var wg sync.WaitGroup
				for range size / blob.BlockSize {
					slots <- struct{}{}
					tok := pub.Publish(topic, 1, false, payload)
					wg.Go(func() {
						tok.Wait()
						if tok.Error() != nil {
							b.Error(tok.Error())
						}
						<-slots
					})
				}
				wg.Wait()
				<-got
			}
		})
	}
}

// memSampler samples the heap in use and the resident set every 100 ms.
type memSampler struct {
	stop chan struct{}
	done chan struct{}

	heapMin, heapMax, rssMin, rssMax uint64
}

func sampleMemory() *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{}), heapMin: ^uint64(0), rssMin: ^uint64(0)}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			m.heapMin, m.heapMax = min(m.heapMin, ms.HeapInuse), max(m.heapMax, ms.HeapInuse)
			if rss := residentBytes(); rss > 0 {
				m.rssMin, m.rssMax = min(m.rssMin, rss), max(m.rssMax, rss)
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memSampler) finish() {
	close(m.stop)
	<-m.done
}

// residentBytes reads the resident set size from /proc (Linux); 0 elsewhere.
func residentBytes() uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// transfer100MiB pulls 100 MiB over the blob path and returns the spread (max - min) of the
// heap in use and of the resident set while it ran.
func transfer100MiB(tb testing.TB) (heapSpread, rssSpread uint64) {
	const dev = "BLOB-M"
	br := testbroker.Start(tb, testbroker.Options{Devices: []string{dev}})
	file := patternFile{size: 100 << 20}
	sum := file.sum(tb)
	tid := blob.ID(sum)
	startBlobServer(tb, br, map[string]io.ReaderAt{tid: file}, map[string]int64{tid: file.size})
	bl := startBlobLink(tb, br, dev)
	tr := newBlobTransfer(tb.TempDir(), bl.client, tid, file.size, sum)
	runtime.GC()
	m := sampleMemory()
	start := time.Now()
	_, err := tr.Run(context.Background())
	elapsed := time.Since(start)
	m.finish()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("100 MiB in %v (%.1f MiB/s); heap in use %d..%d KiB, RSS %d..%d KiB",
		elapsed.Round(time.Millisecond), 100/elapsed.Seconds(), m.heapMin>>10, m.heapMax>>10, m.rssMin>>10, m.rssMax>>10)
	return m.heapMax - m.heapMin, m.rssMax - m.rssMin
}

// TestBlob100MiBMemoryFlat: the memory of a transfer does not grow with the file. Long:
// POSAGENT_LONG=1, or run under -bench (BenchmarkMQTTTransfer100MiB).
func TestBlob100MiBMemoryFlat(t *testing.T) {
	if os.Getenv("POSAGENT_LONG") == "" && !benchmarking() {
		t.Skip("100 MiB transfer: set POSAGENT_LONG=1")
	}
	heap, rss := transfer100MiB(t)
	t.Logf("spread: heap %d KiB, RSS %d KiB", heap>>10, rss>>10)
	// A transfer holding the file (or a growing part of it) would spread by ~100 MiB.
	if heap > 16<<20 {
		t.Fatalf("heap in use spread %d MiB over a 100 MiB transfer", heap>>20)
	}
}

// BenchmarkMQTTTransfer100MiB reports the memory spread of a 100 MiB transfer.
func BenchmarkMQTTTransfer100MiB(b *testing.B) {
	for b.Loop() {
		heap, rss := transfer100MiB(b)
		b.ReportMetric(float64(heap)/(1<<20), "heap-spread-MiB")
		b.ReportMetric(float64(rss)/(1<<20), "rss-spread-MiB")
	}
	b.SetBytes(100 << 20)
}

func benchmarking() bool {
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}
