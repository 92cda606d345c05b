package mqtttest

import (
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

// Accounts is what CheckIsolation needs of a broker: its URL, the TMS account, and the
// password of devices "dev1" and "dev2", both of which must exist.
type Accounts struct {
	URL              string
	TMSUser, TMSPass string
	DevicePassword   func(device string) string
}

// CheckIsolation checks the production access rules on a running broker, as any broker we
// deploy must keep them: a device signs in only with its own password, the TMS reaches a
// device and the device the TMS, and a device can neither read another's tree nor write in
// another's name. Brokers differ in how they refuse (a refused SUBSCRIBE or a filtered one,
// a dropped PUBLISH or a cut connection), so only the outcome is checked.
func CheckIsolation(t *testing.T, a Accounts) {
	t.Helper()
	dev := func(id string) Conn {
		return Conn{URL: a.URL, User: id, Pass: a.DevicePassword(id), ID: id}
	}
	wrong := dev("dev1")
	wrong.Pass = a.DevicePassword("dev2")
	if _, err := Dial(t, wrong); err == nil {
		t.Error("dev1 admitted with dev2's password")
	}
	if _, err := Dial(t, Conn{URL: a.URL, User: "dev3", Pass: "x", ID: "dev3"}); err == nil {
		t.Error("unknown user admitted")
	}
	dev1 := MustDial(t, dev("dev1"))
	tms := MustDial(t, Conn{URL: a.URL, User: a.TMSUser, Pass: a.TMSPass, ID: a.TMSUser})
	dev1.MustSubscribe(t, tmsproto.CmdTopic("dev1"))
	tms.MustSubscribe(t, "tms/v1/+/up/#")

	// Reading: dev2 subscribes to dev1's tree; nothing of dev1's may reach it. The spy's own
	// round trip, after the TMS's command (acknowledged, so routed) on its connection, proves
	// the command had its chance to leak.
	spy := MustDial(t, dev("dev2"))
	spy.MustSubscribe(t, "tms/v1/dev1/#")
	spy.MustSubscribe(t, "tms/v1/#")
	tms.Send(t, tmsproto.CmdTopic("dev1"), "command")
	if m := dev1.Next(t); string(m.Payload()) != "command" {
		t.Fatalf("dev1 got %q, want the TMS's command", m.Payload())
	}
	dev1.Send(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), "ack")
	if m := tms.Next(t); string(m.Payload()) != "ack" {
		t.Fatalf("tms got %q, want dev1's ack", m.Payload())
	}
	spy.MustSubscribe(t, tmsproto.UpTopic("dev2", "probe"))
	spy.Send(t, tmsproto.UpTopic("dev2", "probe"), "probe")
	if m := spy.Next(t); string(m.Payload()) != "probe" {
		t.Fatalf("dev2 received %s %q from dev1's tree", m.Topic(), m.Payload())
	}
	spy.Disconnect(0)

	// Writing: dev2 forges a command for dev1 and an event in dev1's name, then publishes
	// QoS 1 on its own topic. A broker drops a forgery (then acknowledges the QoS 1 message)
	// or cuts the connection; both happen only after the forgeries were handled.
	forger := MustDial(t, dev("dev2"))
	forger.Publish(tmsproto.CmdTopic("dev1"), 0, false, "forged")
	forger.Publish(tmsproto.UpTopic("dev1", tmsproto.StreamEvent), 0, false, "forged")
	if tok := forger.Publish(tmsproto.UpTopic("dev2", tmsproto.StreamEvent), 1, false, "dev2 event"); !tok.WaitTimeout(Wait) {
		t.Fatal("the broker neither acknowledged nor disconnected the forger")
	}
	tms.Send(t, tmsproto.CmdTopic("dev1"), "marker")
	if m := dev1.Next(t); string(m.Payload()) != "marker" {
		t.Fatalf("dev1 got %q first, want the TMS's marker", m.Payload())
	}
	dev1.Send(t, tmsproto.UpTopic("dev1", tmsproto.StreamAck), "ack 2")
	for {
		m := tms.Next(t)
		if string(m.Payload()) == "forged" {
			t.Fatalf("tms received a forgery on %s", m.Topic())
		}
		if string(m.Payload()) == "ack 2" {
			break
		}
	}
}
