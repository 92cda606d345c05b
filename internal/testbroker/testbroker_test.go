package testbroker_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/mqtttest"
	"github.com/posagent/posagent/internal/testbroker"
)

// kinds are the broker kinds to test here: mochi always, mosquitto when installed or
// demanded by the environment (then Start fails the test if it is missing).
func kinds(t *testing.T) []string {
	out := []string{testbroker.KindMochi}
	if os.Getenv(testbroker.EnvKind) == testbroker.KindMosquitto || mosquittoInstalled() {
		out = append(out, testbroker.KindMosquitto)
	} else {
		t.Log("mosquitto not installed: testing mochi only")
	}
	return out
}

func mosquittoInstalled() bool {
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// dial connects as user with that user as client ID, the way a terminal does.
func dial(t *testing.T, url, user, pass string, persistent bool) (*mqtttest.Client, error) {
	t.Helper()
	return mqtttest.Dial(t, mqtttest.Conn{URL: url, User: user, Pass: pass, ID: user, Persistent: persistent})
}

func mustDial(t *testing.T, url, user, pass string, persistent bool) *mqtttest.Client {
	t.Helper()
	return mqtttest.MustDial(t, mqtttest.Conn{URL: url, User: user, Pass: pass, ID: user, Persistent: persistent})
}

func TestAccessRules(t *testing.T) {
	for _, kind := range kinds(t) {
		t.Run(kind, func(t *testing.T) {
			b := testbroker.Start(t, testbroker.Options{Kind: kind, Devices: []string{"dev1", "dev2"}})
			if b.Kind() != kind {
				t.Fatalf("Kind() = %s", b.Kind())
			}
			mqtttest.CheckIsolation(t, mqtttest.Accounts{URL: b.URL(), TMSUser: b.TMSUser(), TMSPass: b.TMSPassword(), DevicePassword: b.DevicePassword})
		})
	}
}

func TestQueuedMessagesSurviveRestart(t *testing.T) {
	for _, kind := range kinds(t) {
		t.Run(kind, func(t *testing.T) {
			b := testbroker.Start(t, testbroker.Options{Kind: kind, Devices: []string{"dev1"}})
			url := b.URL()
			dev := mustDial(t, url, "dev1", b.DevicePassword("dev1"), true)
			dev.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
			dev.Disconnect(0)

			tms := mustDial(t, url, b.TMSUser(), b.TMSPassword(), false)
			const n = 20
			for i := range n {
				tms.Send(t, tmsproto.CmdTopic("dev1"), fmt.Sprint(i))
			}
			tms.Flush(t, "tms/v1/probe/flush")
			b.Restart(t)
			if b.URL() != url {
				t.Fatalf("URL changed across Restart: %s → %s", url, b.URL())
			}
			dev = mustDial(t, url, "dev1", b.DevicePassword("dev1"), true)
			for i := range n {
				if got := string(dev.Next(t).Payload()); got != fmt.Sprint(i) {
					t.Fatalf("message %d after restart: got %q", i, got)
				}
			}
		})
	}
}

func TestStopThenRestart(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{Kind: testbroker.KindMochi, Devices: []string{"dev1"}})
	b.Stop()
	b.Stop() // idempotent
	if _, err := dial(t, b.URL(), "dev1", b.DevicePassword("dev1"), false); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	b.Restart(t)
	mustDial(t, b.URL(), "dev1", b.DevicePassword("dev1"), false)
}

func TestKindFromEnvironment(t *testing.T) {
	t.Setenv(testbroker.EnvKind, testbroker.KindMochi)
	if k := testbroker.Start(t, testbroker.Options{}).Kind(); k != testbroker.KindMochi {
		t.Fatalf("env asked for mochi, got %s", k)
	}
}
