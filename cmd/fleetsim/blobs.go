package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/blob"
)

// blobWorkers answer block requests at once; one transfer always maps to the same worker,
// so its answers leave in the order of its requests.
const blobWorkers = 8

// blobQueue is each worker's backlog; beyond it a request is dropped and the terminal asks
// again after its stall timeout.
const blobQueue = 4096

// blobPublishTimeout bounds the wait for one answer's PUBACK.
const blobPublishTimeout = 30 * time.Second

// blobServer is the TMS side of MQTT block pull (ota/blob) for the OTA scenario, as
// tmsctl serve runs it: one session for the whole fleet.
type blobServer struct {
	pc     mqtt.Client
	srv    *blob.Server
	log    *slog.Logger
	queues []chan mqtt.Message
	cancel context.CancelFunc
	wg     sync.WaitGroup
	served atomic.Int64 // data bytes answered

	mu    sync.Mutex
	files map[string]*os.File
}

func startBlobServer(ctx context.Context, broker, user, password string, tlsConf *tls.Config, log *slog.Logger) (*blobServer, error) {
	b := &blobServer{log: log, files: map[string]*os.File{}, queues: make([]chan mqtt.Message, blobWorkers)}
	for i := range b.queues {
		b.queues[i] = make(chan mqtt.Message, blobQueue)
	}
	b.srv = &blob.Server{Open: b.open, Publish: b.publish, Logger: log}
	filter := tmsproto.BlobUpTopic("+", "+")
	subscribed := make(chan error, 1)
	o := mqtt.NewClientOptions().AddBroker(broker).SetClientID("fleetsim-blobs-" + randomHex(6)).
		SetUsername(user).SetPassword(password).SetCleanSession(true).SetOrderMatters(true).
		SetAutoReconnect(true).SetMaxReconnectInterval(5 * time.Second).
		SetOnConnectHandler(func(c mqtt.Client) {
			// Again after every reconnect: the session is clean.
			tok := c.Subscribe(filter, 1, b.onRequest)
			err := errors.New("subscription timed out")
			if tok.WaitTimeout(30 * time.Second) {
				err = tok.Error()
			}
			if err != nil {
				log.Error("blob server: subscribe", "err", err)
			}
			select {
			case subscribed <- err:
			default:
			}
		})
	if tlsConf != nil {
		o.SetTLSConfig(tlsConf)
	}
	b.pc = mqtt.NewClient(o)
	if tok := b.pc.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		b.pc.Disconnect(0)
		return nil, fmt.Errorf("blob server: connect %s: %v", broker, tok.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			b.pc.Disconnect(0)
			return nil, fmt.Errorf("blob server: subscribe %s: %w", filter, err)
		}
	case <-ctx.Done():
		b.pc.Disconnect(0)
		return nil, ctx.Err()
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel = cancel
	for _, q := range b.queues {
		b.wg.Go(func() { b.work(wctx, q) })
	}
	return b, nil
}

// onRequest runs on paho's receive path: it only queues.
func (b *blobServer) onRequest(_ mqtt.Client, m mqtt.Message) {
	h := fnv.New32a()
	h.Write([]byte(m.Topic()))
	select {
	case b.queues[h.Sum32()%uint32(len(b.queues))] <- m:
	default:
		b.log.Warn("blob server busy: request dropped", "topic", m.Topic())
	}
}

func (b *blobServer) work(ctx context.Context, q <-chan mqtt.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-q:
			if err := b.srv.Handle(ctx, m.Topic(), m.Payload()); err != nil && ctx.Err() == nil {
				b.log.Warn("blob request not answered", "topic", m.Topic(), "err", err)
			}
		}
	}
}

func (b *blobServer) publish(ctx context.Context, topic string, payload []byte) error {
	tok := b.pc.Publish(topic, 1, false, payload)
	t := time.NewTimer(blobPublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("no PUBACK")
	}
	if blk, err := blob.DecodeBlock(payload); err == nil {
		b.served.Add(int64(len(blk.Data)))
	}
	return nil
}

// add serves the file at path under transfer id tid.
func (b *blobServer) add(tid, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old := b.files[tid]; old != nil {
		old.Close()
	}
	b.files[tid] = f
	return nil
}

func (b *blobServer) open(tid string) (io.ReaderAt, int64, bool) {
	b.mu.Lock()
	f := b.files[tid]
	b.mu.Unlock()
	if f == nil {
		return nil, 0, false
	}
	st, err := f.Stat()
	if err != nil {
		return nil, 0, false
	}
	return f, st.Size(), true
}

func (b *blobServer) close() {
	b.cancel()
	b.wg.Wait()
	b.pc.Disconnect(250)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.files {
		f.Close()
	}
}
