package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/keystore/kcv"
)

// The whole demo, as `make run` runs it but in a temporary folder with a freshly built agent:
// the agent comes online, posdemo provisions it (master key, licence, terminal configuration)
// and it signs in to the host simulator. A second run on the same folder finds everything
// done and the agent signs in again.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	bin := buildAgent(t)
	dir := t.TempDir()

	first := startDemo(t, dir, bin)
	d := first.waitReady(t)
	for _, want := range []string{"provisioned: master key kek0 KCV", "provisioned: licence L-DEMO-",
		"provisioned: host " + d.HostAddr, "signed in to the host, batch 1", "bin/tmsctl keys status"} {
		if !strings.Contains(first.out.String(), want) {
			t.Errorf("the demo did not print %q:\n%s", want, first.out.String())
		}
	}
	checkTerminal(t, d)
	first.stop(t)

	// Again on the same folder: nothing to provision, the agent signs in by itself.
	second := startDemo(t, dir, bin)
	d = second.waitReady(t)
	for _, want := range []string{"(already loaded)", "(already installed", "already active)", "signed in to the host"} {
		if !strings.Contains(second.out.String(), want) {
			t.Errorf("the second run did not print %q:\n%s", want, second.out.String())
		}
	}
	checkTerminal(t, d)
	second.stop(t)
}

// buildAgent builds the agent binary into the test's temporary folder.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "posagent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/posagent/posagent/cmd/posagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type runningDemo struct {
	cancel    context.CancelFunc
	done      chan error
	ready     chan demoInfo
	out, logs syncio.Buffer
}

func startDemo(t *testing.T, dir, bin string) *runningDemo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningDemo{cancel: cancel, done: make(chan error, 1), ready: make(chan demoInfo, 1)}
	go func() {
		r.done <- run(ctx, options{Dir: dir, Addr: "127.0.0.1:0", AgentBin: bin, Out: &r.out, AgentOut: &r.logs,
			Log: &r.logs, Ready: func(d demoInfo) { r.ready <- d }})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runningDemo) waitReady(t *testing.T) demoInfo {
	t.Helper()
	select {
	case d := <-r.ready:
		return d
	case err := <-r.done:
		r.done <- err
		t.Fatalf("the demo ended: %v\n%s\nagent:\n%s", err, r.out.String(), r.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("not provisioned and signed in within 30 s:\n%s\nagent:\n%s", r.out.String(), r.logs.String())
	}
	return demoInfo{}
}

// stop ends the demo and checks it ended cleanly (once; later calls do nothing).
func (r *runningDemo) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("run: %v\nagent:\n%s", err, r.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("the demo did not stop within 20 s")
	}
}

// checkTerminal asks the agent for its statistics as a TMS would and checks it is ready to
// pay: the demo master key as kek0 and working keys under it from the sign-in, a valid licence
// for payments, the terminal configuration posdemo wrote, signed in; and the host agrees.
func checkTerminal(t *testing.T, d demoInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := tmsclient.Connect(ctx, tmsclient.Options{Broker: d.BrokerURL, Username: tmsUser, Password: d.TMSPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Acks first, then stats: see newProvisioner for why the order matters.
	acks, err := c.WatchAcks(ctx, deviceID)
	if err != nil {
		t.Fatal(err)
	}
	defer acks.Stop()
	records := make(chan tmsclient.Uplink, 16)
	sub, err := c.Watch(ctx, deviceID, []string{tmsproto.StreamStats}, func(u tmsclient.Uplink) {
		select {
		case records <- u:
		case <-ctx.Done():
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	seqs, err := tmsclient.NewSeqFile(filepath.Join(d.Dir, "keys", keyID+".seq.json"))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := c.Send(ctx, deviceID, d.Key, tmsproto.Command{Kind: "stats.now"}, tmsclient.WithSeq(seqs))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := acks.Await(ctx, sent.Match(), nil)
	if err != nil || ack.State != tmsproto.StateSucceeded {
		t.Fatalf("stats.now: %+v %v", ack, err)
	}
	var res struct {
		StatsSeq uint64 `cbor:"statsSeq"`
	}
	if err := cbor.Unmarshal(ack.Result, &res); err != nil {
		t.Fatal(err)
	}
	var st agentStats
	for {
		select {
		case u := <-records:
			if u.Err != nil || u.Envelope.Seq < res.StatsSeq {
				continue
			}
			if err := cbor.Unmarshal(u.Envelope.Body, &st); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("no stats record after stats.now")
		}
		break
	}

	kekHex, err := os.ReadFile(filepath.Join(d.Dir, "keys", "demo-kek.hex"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := hex.DecodeString(strings.TrimSpace(string(kekHex)))
	if err != nil {
		t.Fatal(err)
	}
	cv, err := kcv.TDES(kek, 3)
	if err != nil {
		t.Fatal(err)
	}
	if k := st.key("kek0"); k == nil || !strings.EqualFold(k.KCV, hex.EncodeToString(cv)) || k.Source != "tr31" {
		t.Errorf("kek0: %+v, want KCV %X from tr31", k, cv)
	}
	for _, role := range []string{"pik", "mak"} {
		if k := st.key(role); k == nil || k.Parent != "kek0" || k.Source != "signin" {
			t.Errorf("%s: %+v, want one from the sign-in under kek0", role, k)
		}
	}
	if l := st.License; l.State != "valid" || !strings.HasPrefix(l.ID, "L-DEMO-") || !slices.Contains(l.Features, "payments") {
		t.Errorf("licence %+v", l)
	}
	if st.Payment.State != "normal" || st.Payment.Batch < 1 {
		t.Errorf("payment %+v, want signed in", st.Payment)
	}

	// The configuration file of the printed config.apply example is the active one.
	b, err := os.ReadFile(filepath.Join(d.Dir, termConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := termconfig.DecodeJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != st.Config || !slices.Equal(doc.AuthHost.Addresses, []string{d.HostAddr}) || doc.AuthHost.TerminalID != demoTID {
		t.Errorf("%s: version %d host %v, the terminal has version %d, the host is %s", termConfigFile,
			doc.Version, doc.AuthHost.Addresses, st.Config, d.HostAddr)
	}

	// The host's control API: the terminal is signed in there too.
	var ts struct {
		SignedIn bool `json:"signedIn"`
		SignIns  int  `json:"signIns"`
	}
	if err := getJSON(fmt.Sprintf("http://%s/terminals/%s", d.HostHTTP, demoTID), &ts); err != nil {
		t.Fatal(err)
	}
	if !ts.SignedIn || ts.SignIns < 1 {
		t.Errorf("host: terminal %s %+v", demoTID, ts)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
