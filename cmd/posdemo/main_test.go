package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/ecr/ecrclient"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/syncio"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/keystore/kcv"
)

// The whole demo, as `make run` runs it but in a temporary folder with a freshly built agent:
// the agent comes online, posdemo provisions it (master key, licence, terminal configuration)
// and it signs in to the host simulator; a cash register pays through the agent's API and the
// simulated customer's card tap. A second run on the same folder finds everything done, the
// agent signs in again and its API answers.
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
	checkDeviceInfo(t, d)
	checkPayment(t, d, first)
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
	checkDeviceInfo(t, d)
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
		// The customer taps soon; the QR customer never pays, so a success is the card's.
		r.done <- run(ctx, options{Dir: dir, Addr: "127.0.0.1:0", AgentBin: bin, Out: &r.out, AgentOut: &r.logs,
			Log: &r.logs, Ready: func(d demoInfo) { r.ready <- d }, ECRAddr: "127.0.0.1:0",
			Tap: true, TapDelay: 300 * time.Millisecond, QRPayDelay: -1})
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

// checkDeviceInfo calls the agent's cash-register API as a cash register does.
func checkDeviceInfo(t *testing.T, d demoInfo) {
	t.Helper()
	if d.ECRErr != nil || d.ECRURL == "" {
		t.Fatalf("cash-register API %q: %v", d.ECRURL, d.ECRErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := ecrclient.New(d.ECRURL, ecrclient.Options{})
	defer c.CloseIdleConnections()
	di, err := c.DeviceInfo(ctx)
	if err != nil {
		t.Fatalf("/v2/deviceinfo: %v", err)
	}
	if di.TerminalID != demoTID || di.SerialNum != deviceID {
		t.Errorf("/v2/deviceinfo: %+v, want terminal %s, serial %s", di, demoTID, deviceID)
	}
}

// checkPayment pays the printed example's amount through the API: the terminal asks for a
// card, the simulated customer taps it, the host approves, and the receipt fields carry the
// demo shop. The host's ledger has the purchase under the answer's RRN.
func checkPayment(t *testing.T, d demoInfo, r *runningDemo) {
	t.Helper()
	if want := payHint(d.ECRURL, demoPayAmount); !strings.Contains(r.out.String(), want) {
		t.Errorf("the demo did not print how to pay (%q):\n%s", want, r.out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := ecrclient.New(d.ECRURL, ecrclient.Options{})
	defer c.CloseIdleConnections()
	id, err := c.Payment(ctx, demoPayAmount, true)
	if err != nil {
		t.Fatalf("/v2/payment: %v", err)
	}
	var subs []string
	st, err := c.Follow(ctx, id, 100*time.Millisecond, func(s ecrclient.Status) { subs = append(subs, s.SubStatus) })
	if err != nil {
		t.Fatalf("following %s: %v (sub-statuses %v)\n%s\nagent:\n%s", id, err, subs, r.out.String(), r.logs.String())
	}
	if st.Status != ecrclient.StatusSuccess || st.SubStatus != "CardTransactionSuccess" || st.ChequeInfo == nil {
		t.Fatalf("payment %s: %+v (sub-statuses %v)\nagent:\n%s", id, st, subs, r.logs.String())
	}
	if !slices.Contains(subs, "WaitUser") {
		t.Errorf("sub-statuses %v: the cash register never saw WaitUser before the tap", subs)
	}
	if !strings.Contains(r.out.String(), "the customer taps card "+defaultTapCard) {
		t.Errorf("the demo did not say it tapped the card:\n%s", r.out.String())
	}
	c2 := st.ChequeInfo
	if c2.StoreName != demoMerchantName || c2.City != demoCity || c2.Address != demoAddress || c2.BIN != demoTaxID ||
		c2.TerminalID != demoTID || c2.Method != "card" || c2.Type != "payment" || c2.Amount != "1500 ₸" ||
		c2.RRN == "" || c2.RRN != st.TransactionID {
		t.Errorf("chequeInfo %+v", *c2)
	}
	if !strings.HasPrefix(c2.CardMask, "622848") || strings.Contains(c2.CardMask, "6228480000000012344") {
		t.Errorf("cardMask %q: not the tapped card, or not masked", c2.CardMask)
	}
	var ledger struct {
		Entries []struct {
			Op     string `json:"op"`
			RRN    string `json:"rrn"`
			Amount int64  `json:"amount"`
			State  string `json:"state"`
		} `json:"entries"`
	}
	if err := getJSON(fmt.Sprintf("http://%s/ledger/%s", d.HostHTTP, demoTID), &ledger); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ledger.Entries {
		if e.RRN == st.TransactionID {
			found = e.Op == "purchase" && e.Amount == demoPayAmount*100 && e.State == "approved"
			if !found {
				t.Errorf("host ledger entry %+v", e)
			}
		}
	}
	if !found {
		t.Errorf("the host has no approved purchase of %d with RRN %s: %+v", demoPayAmount*100, st.TransactionID, ledger.Entries)
	}
}

// A busy cash-register port is named and the API moves to a free port on the same host.
func TestECRListenBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	got, note, err := ecrListen(busy)
	if err != nil {
		t.Fatal(err)
	}
	if got == busy || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("ecrListen(%s) = %s, want another port on 127.0.0.1", busy, got)
	}
	if !strings.Contains(note, busy+" is busy") || !strings.Contains(note, got) {
		t.Errorf("note %q does not name the busy address and the one taken", note)
	}
	// A free address is kept, without a note.
	if again, note, err := ecrListen(got); err != nil || again != got || note != "" {
		t.Errorf("ecrListen(%s) = %s, %q, %v; want it unchanged", got, again, note, err)
	}
	if _, _, err := ecrListen("8080"); !errors.Is(err, errECRAddr) {
		t.Errorf("ecrListen(8080): %v, want errECRAddr", err)
	}
}

// A configuration applied by an earlier demo is kept only while it still serves the demo: a
// folder from before the cash-register API (no QR host, fewer operations) gets the new one.
func TestFitsDemo(t *testing.T) {
	want := demoConfig("127.0.0.1:5000", "http://127.0.0.1:5080")
	edited := demoConfig("127.0.0.1:5000", "http://127.0.0.1:5080")
	edited.PrintProfile.Language = termconfig.LanguageEnglish
	old := demoConfig("127.0.0.1:5000", "http://127.0.0.1:5080")
	old.QRHosts = nil
	old.AllowedOperations = []termconfig.Operation{termconfig.OpPayment, termconfig.OpVoid, termconfig.OpRefund,
		termconfig.OpBalance, termconfig.OpSettlement, termconfig.OpEchoTest}
	fewer := demoConfig("127.0.0.1:5000", "http://127.0.0.1:5080")
	fewer.AllowedOperations = slices.DeleteFunc(fewer.AllowedOperations, func(op termconfig.Operation) bool { return op == termconfig.OpTopUp })
	for _, c := range []struct {
		name string
		prev *termconfig.Document
		fits bool
	}{
		{"same", demoConfig("127.0.0.1:5000", "http://127.0.0.1:5080"), true},
		{"edited by hand", edited, true},
		{"before the cash-register API", old, false},
		{"an operation taken away", fewer, false},
		{"QR host moved", demoConfig("127.0.0.1:5000", "http://127.0.0.1:5081"), false},
		{"host moved", demoConfig("127.0.0.1:5001", "http://127.0.0.1:5080"), false},
	} {
		if got := fitsDemo(c.prev, want); got != c.fits {
			t.Errorf("%s: fitsDemo = %v, want %v", c.name, got, c.fits)
		}
	}
	want.Version = 2
	if err := want.Validate(); err != nil {
		t.Errorf("the demo configuration does not validate: %v", err)
	}
}
