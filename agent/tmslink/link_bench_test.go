package tmslink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/outbox"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
)

type discardInbox struct{}

func (discardInbox) Receive(context.Context, []byte) error { return nil }

const benchRecords = 5000

var benchBody = map[string]any{"level": "info", "msg": "a typical log line of moderate length", "n": 12345}

// BenchmarkOutboxThroughput measures records per second stored durably in the outbox and
// acknowledged by a real broker (queued by 4 producers, drained by the link), and the same
// number of QoS 1 publishes of the same payloads by a bare paho loop with the same in-flight
// window. The ratio is the price of never losing a record.
func BenchmarkOutboxThroughput(b *testing.B) {
	const dev = "BENCH-1"
	br := testbroker.Start(b, testbroker.Options{Devices: []string{dev}})

	b.Run("outbox", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			total += runOutboxOnce(b, br, dev)
		}
		b.ReportMetric(float64(benchRecords*b.N)/total.Seconds(), "records/s")
	})
	b.Run("bare-publish", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			total += runBareOnce(b, br, dev)
		}
		b.ReportMetric(float64(benchRecords*b.N)/total.Seconds(), "records/s")
	})
}

func runOutboxOnce(b *testing.B, br *testbroker.Broker, dev string) time.Duration {
	db, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	commit := store.NewCommitter(db)
	defer commit.Close()
	out, err := outbox.Open(db, commit, outbox.Options{MaxRecords: 1 << 30, MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	link, err := New(Options{DeviceID: dev, Broker: br.URL(), Password: br.DevicePassword(dev), Inflight: 32,
		Backoff: backoff.Policy{Base: 50 * time.Millisecond, Cap: time.Second},
		DB:      db, Commit: commit, Outbox: out, Inbox: discardInbox{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	for !link.Status().Connected {
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < benchRecords/4; i++ {
				if _, err := out.Append(ctx, tmsproto.StreamLogAgent, "log", benchBody); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for out.State().Records > 0 {
		time.Sleep(200 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	return elapsed
}

func runBareOnce(b *testing.B, br *testbroker.Broker, dev string) time.Duration {
	payload, err := tmsproto.Marshal(tmsproto.Envelope{V: 1, Stream: tmsproto.StreamLogAgent, Seq: 1, TS: 1, Kind: "log",
		Body: mustMarshal(b, benchBody)})
	if err != nil {
		b.Fatal(err)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID(dev).SetUsername(dev).
		SetPassword(br.DevicePassword(dev)).SetCleanSession(true).SetOrderMatters(false))
	if tok := c.Connect(); tok.Wait() && tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	topic := tmsproto.UpTopic(dev, tmsproto.StreamLogAgent)
	window := make(chan struct{}, 32)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < benchRecords; i++ {
		window <- struct{}{}
		wg.Add(1)
		tok := c.Publish(topic, 1, false, payload)
		go func() {
			defer wg.Done()
			tok.Wait()
			if tok.Error() != nil {
				b.Error(fmt.Errorf("publish: %w", tok.Error()))
			}
			<-window
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	return elapsed
}

func mustMarshal(b *testing.B, v any) []byte {
	raw, err := tmsproto.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
