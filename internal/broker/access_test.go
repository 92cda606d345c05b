package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// matches is an MQTT topic filter match, written independently of the code under test.
func matches(filter, topic string) bool {
	f := strings.Split(filter, "/")
	tp := strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "#" || f[0] == "+") {
		return false
	}
	for i, level := range f {
		if level == "#" {
			return true
		}
		if i >= len(tp) {
			return false
		}
		if level != "+" && level != tp[i] {
			return false
		}
	}
	return len(f) == len(tp)
}

func TestWithin(t *testing.T) {
	dev := []string{"tms", "v1", "dev1"}
	cases := []struct {
		filter string
		want   bool
	}{
		{"tms/v1/dev1", true},
		{"tms/v1/dev1/#", true},
		{"tms/v1/dev1/down/cmd", true},
		{"tms/v1/dev1/+/cmd", true},
		{"tms/v1/dev1/", true},
		{"tms/v1/dev1x/#", false},
		{"tms/v1/dev", false},
		{"tms/v1/+/down/cmd", false},
		{"tms/v1/#", false},
		{"tms/+/dev1/#", false},
		{"+/v1/dev1/#", false},
		{"#", false},
		{"tms/v1", false},
		{"tms", false},
		{"", false},
		{"$SYS/tms/v1/dev1", false},
		{"$share/g/tms/v1/dev1/#", false},
		{"/tms/v1/dev1", false},
	}
	for _, c := range cases {
		if got := within(c.filter, dev...); got != c.want {
			t.Errorf("within(%q, dev1) = %v, want %v", c.filter, got, c.want)
		}
	}
	if !within("tms/v1/#", tmsRoot...) || !within("tms/v1/+/up/#", tmsRoot...) || within("tms/#", tmsRoot...) {
		t.Error("TMS tree rules broken")
	}
}

func TestAllowed(t *testing.T) {
	a, err := newAccessControl(Options{Users: map[string]string{"tms": "x", "dev1": "y"}, TMSUsers: []string{"tms"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, topic string
		want        bool
	}{
		{"tms", "tms/v1/dev1/down/cmd", true},
		{"tms", "tms/v1/#", true},
		{"tms", "other", false},
		{"dev1", "tms/v1/dev1/up/ack", true},
		{"dev1", "tms/v1/dev2/up/ack", false},
		{"", "tms/v1/dev1/up/ack", false},
		{"a/b", "tms/v1/a/b/x", false},
		{"#", "tms/v1/#", false},
	} {
		if got := a.allowed(c.user, c.topic); got != c.want {
			t.Errorf("allowed(%q, %q) = %v, want %v", c.user, c.topic, got, c.want)
		}
	}
}

// FuzzWithin checks the ACL's safety property: whatever filter a terminal sends, if it is
// accepted it can match no topic outside the terminal's tree, and every topic inside stays
// reachable.
func FuzzWithin(f *testing.F) {
	for _, s := range []string{"tms/v1/dev1/#", "tms/v1/+/down/cmd", "#", "tms/v1/dev1", "tms/v1/dev1x", "$SYS/#", "tms/v1/dev1/+/+/#", "tms//dev1"} {
		f.Add(s)
	}
	outside := []string{"tms/v1/dev2/down/cmd", "tms/v1/dev1x/up/ack", "tms/v1", "tms", "$SYS/broker", "other/tms/v1/dev1", "tms/v1//dev1", "tms/v2/dev1/x", "/tms/v1/dev1"}
	inside := []string{"tms/v1/dev1", "tms/v1/dev1/down/cmd", "tms/v1/dev1/up/log/ecr"}
	f.Fuzz(func(t *testing.T, filter string) {
		ok := within(filter, "tms", "v1", "dev1")
		if !ok {
			return
		}
		for _, topic := range outside {
			if matches(filter, topic) {
				t.Fatalf("accepted filter %q matches foreign topic %q", filter, topic)
			}
		}
		if !strings.ContainsAny(filter, "+#") && filter != "tms/v1/dev1" && !strings.HasPrefix(filter, "tms/v1/dev1/") {
			t.Fatalf("accepted topic %q lies outside tms/v1/dev1/", filter)
		}
		for _, topic := range inside {
			if !within(topic, "tms", "v1", "dev1") {
				t.Fatalf("own topic %q refused", topic)
			}
		}
	})
}

func TestLogsCarryNoPayloadOrPassword(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(redactingHandler{next: slog.NewTextHandler(&buf, nil)})
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "tms/v1/dev1/down/cmd",
		Payload:     []byte("KEYBLOCK-SECRET"),
		PacketID:    7,
	}
	conn := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}}
	conn.Connect.Password = []byte("PASSWORD-SECRET")
	log.Warn("error processing packet", "pk", pk, "packet", &conn, slog.Group("g", "inner", pk))
	log.With("pk", conn).Info("with attrs")
	out := buf.String()
	for _, secret := range []string{"KEYBLOCK-SECRET", "PASSWORD-SECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("log leaks %s:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "tms/v1/dev1/down/cmd") || !strings.Contains(out, "payload_bytes=15") {
		t.Errorf("log lost the packet summary:\n%s", out)
	}
}
