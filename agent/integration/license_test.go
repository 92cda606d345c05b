package integration

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/tmsproto"
)

// TestLicenseEndToEnd: an unlicensed agent reports license.missing and asks on up/req; a
// licence for another terminal fails and changes nothing; the right one is installed, raises
// license.installed and shows in the statistics.
func TestLicenseEndToEnd(t *testing.T) {
	relPub, relKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("\n[[license.release_keys]]\nid = %q\npublic_key = %q\n", "rel-1", base64.StdEncoding.EncodeToString(relPub))

	const dev = "LIC-IT-1"
	e := newEnv(t, dev)
	e.startInProcessWith(extra)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Commands sent before the agent's first subscription would not be kept by the broker.
	waitFor(t, 20*time.Second, "first stats", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })

	issue := func(id, serial string) []byte {
		raw, err := license.Sign(relKey, "rel-1", license.License{V: license.Version, ID: id, Serial: serial,
			Platform: license.CurrentPlatform(), Features: []string{"payments", "qr"},
			Issued: time.Now().Unix(), NotBefore: time.Now().Add(-time.Minute).Unix(), Expires: time.Now().Add(24 * time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	put := func(raw []byte) tmsproto.Ack {
		body, err := tmsproto.Marshal(map[string]any{"license": raw})
		if err != nil {
			t.Fatal(err)
		}
		sent, err := e.tms.Send(ctx, dev, e.key, tmsproto.Command{Kind: "license.put", Body: body})
		if err != nil {
			t.Fatal(err)
		}
		return e.finalAck(sent.Match(), 0)
	}

	// A licence for another terminal: refused, nothing installed.
	a := put(issue("L-OTHER", "SOMEONE-ELSE"))
	if a.State != tmsproto.StateFailed || !strings.Contains(a.Message, "another terminal") {
		t.Fatalf("licence for another terminal: %+v", a)
	}
	var failed struct {
		Reason string `cbor:"reason"`
	}
	if err := looseUnmarshal(a.Result, &failed); err != nil || failed.Reason != "other_terminal" {
		t.Errorf("failed result %q (%v)", failed.Reason, err)
	}

	// Started without a licence: the event and the request, exactly one of each.
	waitFor(t, 20*time.Second, "license.missing and license.request", func() bool {
		return len(e.licenseEvents("license.missing")) == 1 && len(e.licenseRequests()) == 1
	})
	req := e.licenseRequests()[0]
	var reqBody struct {
		Serial   string `cbor:"serial"`
		Platform string `cbor:"platform"`
		Current  string `cbor:"current"`
	}
	if err := tmsproto.Unmarshal(req.Body, &reqBody); err != nil || req.Kind != "license.request" ||
		reqBody.Serial != dev || reqBody.Platform != license.CurrentPlatform() || reqBody.Current != "" {
		t.Errorf("up/req %s %+v (%v)", req.Kind, reqBody, err)
	}

	// The right licence.
	a = put(issue("L-1", dev))
	if a.State != tmsproto.StateSucceeded {
		t.Fatalf("license.put: %+v", a)
	}
	var res struct {
		ID       string   `cbor:"id"`
		Expires  int64    `cbor:"expires"`
		Features []string `cbor:"features"`
	}
	if err := tmsproto.Unmarshal(a.Result, &res); err != nil || res.ID != "L-1" || len(res.Features) != 2 || res.Expires == 0 {
		t.Errorf("result %+v (%v)", res, err)
	}
	waitFor(t, 10*time.Second, "license.installed", func() bool { return len(e.licenseEvents("license.installed")) == 1 })
	waitFor(t, 10*time.Second, "stats with a valid licence", func() bool {
		for _, s := range e.stream(tmsproto.StreamStats) {
			var st struct {
				License license.Status `cbor:"license"`
			}
			if looseUnmarshal(s.Body, &st) == nil && st.License.State == license.StateValid && st.License.ID == "L-1" {
				return true
			}
		}
		return false
	})
	if n := len(e.licenseRequests()); n != 1 {
		t.Errorf("%d licence requests, want 1", n)
	}
}

// events returns the up/event records of one kind so far.
func (e *env) licenseEvents(kind string) []tmsproto.Envelope {
	var out []tmsproto.Envelope
	for _, env := range e.stream(tmsproto.StreamEvent) {
		if env.Kind == kind {
			out = append(out, env)
		}
	}
	return out
}

// licenseRequests returns the license.request records on up/req so far (other requests, for
// keys say, share the stream).
func (e *env) licenseRequests() []tmsproto.Envelope {
	var out []tmsproto.Envelope
	for _, env := range e.stream(tmsproto.StreamReq) {
		if env.Kind == "license.request" {
			out = append(out, env)
		}
	}
	return out
}
