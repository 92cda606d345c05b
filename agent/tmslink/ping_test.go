package tmslink

import (
	"context"
	"errors"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
)

func TestPingNotConnected(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := New(Options{DeviceID: "D1", Broker: "tcp://127.0.0.1:1", DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Ping(context.Background()); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("err %v", err)
	}
}

// TestPingOverBroker pings through a real broker: the round trip ends on the PUBACK, and the
// TMS side sees an envelope on up/ping numbered per ping.
func TestPingOverBroker(t *testing.T) {
	const dev = "PING-1"
	br := testbroker.Start(t, testbroker.Options{Devices: []string{dev}})
	seen := make(chan *tmsproto.Envelope, 4)
	tms := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID("tms-ping-test").
		SetUsername(br.TMSUser()).SetPassword(br.TMSPassword()))
	if tok := tms.Connect(); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer tms.Disconnect(0)
	if tok := tms.Subscribe(tmsproto.UpTopic(dev, StreamPing), 1, func(_ mqtt.Client, m mqtt.Message) {
		env, err := tmsproto.DecodeEnvelope(m.Payload())
		if err != nil {
			t.Errorf("ping record: %v", err)
			return
		}
		seen <- env
	}); tok.Wait() && tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	bl := startBlobLink(t, br, dev)
	for want := uint64(1); want <= 2; want++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rtt, err := bl.link.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d: %v", want, err)
		}
		if rtt <= 0 {
			t.Errorf("ping %d: round trip %v", want, rtt)
		}
		select {
		case env := <-seen:
			if env.Stream != StreamPing || env.Kind != "ping" || env.Seq != want {
				t.Errorf("ping %d arrived as %s/%s seq %d", want, env.Stream, env.Kind, env.Seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ping %d never reached the TMS side", want)
		}
	}
}
