package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/tr31"
)

const (
	termConfigFile = "terminal-config.json" // the terminal configuration posdemo applied
	licenceFile    = deviceID + ".lic"      // the licence posdemo issued last

	onlineWait  = 60 * time.Second // for the agent to come online
	signInWait  = 45 * time.Second // for the agent to sign in once provisioned
	attemptWait = 15 * time.Second // for one command's final ack before it is sent again
)

// licenceFeatures are what the demo licence covers (sorted, as tmsctl writes them).
var licenceFeatures = []string{"ecr", "payments", "qr"}

// agentStats is what posdemo reads of an up/stats record, decoded leniently: the agent says
// more, and may say more in later versions.
type agentStats struct {
	Seq    uint64 `cbor:"-"`
	Config uint64 `cbor:"config"`
	Keys   *struct {
		Backend   string     `cbor:"backend"`
		ActiveKEK int        `cbor:"activeKek"`
		Keys      []keyState `cbor:"keys"`
	} `cbor:"keys"`
	License struct {
		State    string   `cbor:"state"`
		ID       string   `cbor:"id"`
		Expires  int64    `cbor:"expires"`
		Features []string `cbor:"features"`
	} `cbor:"license"`
	Payment struct {
		State string `cbor:"state"`
		Batch int    `cbor:"batch"`
	} `cbor:"payment"`
}

type keyState struct {
	Role   string `cbor:"role"`
	KCV    string `cbor:"kcv"`
	Source string `cbor:"src"`
	Parent string `cbor:"parent"`
}

// key is the loaded key of role, or nil.
func (s *agentStats) key(role string) *keyState {
	if s.Keys == nil {
		return nil
	}
	for i := range s.Keys.Keys {
		if s.Keys.Keys[i].Role == role {
			return &s.Keys.Keys[i]
		}
	}
	return nil
}

// signedIn says whether the agent is signed in to the host with working keys under kek0.
func (s *agentStats) signedIn() bool {
	if s.Payment.State != "normal" {
		return false
	}
	for _, role := range []string{"pik", "mak"} {
		if k := s.key(role); k == nil || k.Parent != "kek0" {
			return false
		}
	}
	return true
}

// provisioner is the TMS side of the demo: it watches the agent's presence and statistics
// and sends the commands a TMS sends to put a new terminal into service.
type provisioner struct {
	tms  *tmsclient.Client
	dir  string
	sec  *secrets
	host *demoHost
	out  io.Writer
	seqs tmsclient.SeqSource
	acks *tmsclient.AckWaiter
	sub  *tmsclient.Subscription

	mu      sync.Mutex
	online  bool          // the agent has come online since the watch started
	latest  *agentStats   // the stats record of highest seq seen
	changed chan struct{} // closed and replaced when online or latest change
}

// newProvisioner starts watching the agent's acks, presence and statistics; call it before
// the agent starts so that its coming online is seen.
//
// Everything is subscribed here, once, and in this order, because the embedded broker (mochi)
// shares packet ids between its deliveries to a client and that client's requests: a SUBSCRIBE
// whose id happens to be that of a delivery still awaiting its PUBACK is refused. Before the
// agent runs nothing is delivered on the ack stream, and the retained presence record comes
// only after the last subscription.
func newProvisioner(ctx context.Context, tms *tmsclient.Client, dir string, sec *secrets, host *demoHost, out io.Writer) (*provisioner, error) {
	// The seq file tmsctl uses by default for this key, so the two never go back.
	seqs, err := tmsclient.NewSeqFile(filepath.Join(dir, "keys", keyID+".seq.json"))
	if err != nil {
		return nil, err
	}
	p := &provisioner{tms: tms, dir: dir, sec: sec, host: host, out: out, seqs: seqs, changed: make(chan struct{})}
	if p.acks, err = tms.WatchAcks(ctx, deviceID); err != nil {
		return nil, fmt.Errorf("watching %s: %w", deviceID, err)
	}
	p.sub, err = tms.Watch(ctx, deviceID, []string{tmsproto.StreamOnline, tmsproto.StreamStats}, p.receive)
	if err != nil {
		p.acks.Stop()
		return nil, fmt.Errorf("watching %s: %w", deviceID, err)
	}
	return p, nil
}

func (p *provisioner) stop() {
	p.sub.Stop()
	p.acks.Stop()
}

func (p *provisioner) receive(u tmsclient.Uplink) {
	if u.Err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch u.Stream {
	case tmsproto.StreamOnline:
		var o tmsproto.Online
		// A retained record is from before this run: only a live one says the agent is up.
		if u.Retained || cbor.Unmarshal(u.Envelope.Body, &o) != nil {
			return
		}
		p.online = o.Online
	case tmsproto.StreamStats:
		var s agentStats
		if cbor.Unmarshal(u.Envelope.Body, &s) != nil {
			return
		}
		s.Seq = u.Envelope.Seq
		if p.latest != nil && s.Seq <= p.latest.Seq {
			return
		}
		p.latest = &s
	default:
		return
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// state returns what is known now and a channel closed when it changes.
func (p *provisioner) state() (online bool, latest *agentStats, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.online, p.latest, p.changed
}

// run provisions the agent once it is online and waits for it to sign in to the host,
// printing one line per step. signedIn is false when the agent did not sign in in time.
func (p *provisioner) run(ctx context.Context) (signedIn bool, err error) {
	if err := p.waitOnline(ctx); err != nil {
		return false, err
	}
	st, err := p.freshStats(ctx)
	if err != nil {
		return false, err
	}
	if err := p.masterKey(ctx, st); err != nil {
		return false, fmt.Errorf("master key: %w", err)
	}
	if err := p.licence(ctx, st); err != nil {
		return false, fmt.Errorf("licence: %w", err)
	}
	if err := p.terminalConfig(ctx, st); err != nil {
		return false, fmt.Errorf("terminal configuration: %w", err)
	}
	// The agent signs in by itself: at start, and as soon as a configuration brings a host.
	base, err := p.freshStats(ctx)
	if err != nil {
		return false, err
	}
	wctx, cancel := context.WithTimeout(ctx, signInWait)
	defer cancel()
	st, err = p.waitStats(wctx, base.Seq, (*agentStats).signedIn)
	if err != nil {
		if ctx.Err() == nil {
			fmt.Fprintf(p.out, "posdemo: the agent has not signed in to the host within %v (payment state %q): see its log\n",
				signInWait, p.lastPaymentState())
			return false, nil
		}
		return false, err
	}
	fmt.Fprintf(p.out, "signed in to the host, batch %d\n", st.Payment.Batch)
	return true, nil
}

func (p *provisioner) lastPaymentState() string {
	if _, s, _ := p.state(); s != nil {
		return s.Payment.State
	}
	return ""
}

func (p *provisioner) waitOnline(ctx context.Context) error {
	t := time.NewTimer(onlineWait)
	defer t.Stop()
	for {
		online, _, changed := p.state()
		if online {
			return nil
		}
		select {
		case <-changed:
		case <-t.C:
			return fmt.Errorf("the agent did not come online within %v", onlineWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// send sends a command and returns its final ack, sending it again (a new command) when no
// final ack comes: the first command after the agent comes online may reach the broker before
// the agent's subscription does. Every command posdemo sends may be repeated harmlessly.
// A final ack other than succeeded is returned with an error.
func (p *provisioner) send(ctx context.Context, kind string, body []byte) (tmsproto.Ack, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptWait)
		cmd := tmsproto.Command{Kind: kind, Body: body, Expires: time.Now().Add(10 * time.Minute).Unix()}
		sent, err := p.tms.Send(actx, deviceID, p.sec.cmdKey, cmd, tmsclient.WithSeq(p.seqs))
		var ack tmsproto.Ack
		if err == nil {
			ack, err = p.acks.Await(actx, sent.Match(), nil)
		}
		cancel()
		switch {
		case err == nil && ack.State == tmsproto.StateSucceeded:
			return ack, nil
		case err == nil:
			return ack, fmt.Errorf("%s %s (%s): %s", kind, ack.State, ack.Reason, ack.Message)
		case ctx.Err() != nil || attempt == 4 || !errors.Is(err, context.DeadlineExceeded):
			return ack, err
		}
	}
}

// freshStats asks for statistics (stats.now) and returns them.
func (p *provisioner) freshStats(ctx context.Context) (*agentStats, error) {
	ack, err := p.send(ctx, "stats.now", nil)
	if err != nil {
		return nil, err
	}
	var res struct {
		StatsSeq uint64 `cbor:"statsSeq"`
	}
	_ = cbor.Unmarshal(ack.Result, &res)
	wctx, cancel := context.WithTimeout(ctx, attemptWait)
	defer cancel()
	return p.waitStats(wctx, res.StatsSeq, nil)
}

// waitStats returns the first statistics of seq ≥ minSeq that satisfy ok (any when nil),
// asking for fresh ones (stats.now) every few seconds meanwhile.
func (p *provisioner) waitStats(ctx context.Context, minSeq uint64, ok func(*agentStats) bool) (*agentStats, error) {
	nudge := time.NewTicker(5 * time.Second)
	defer nudge.Stop()
	for {
		_, s, changed := p.state()
		if s != nil && s.Seq >= minSeq && (ok == nil || ok(s)) {
			return s, nil
		}
		select {
		case <-changed:
		case <-nudge.C:
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = p.tms.Send(sctx, deviceID, p.sec.cmdKey, tmsproto.Command{Kind: "stats.now",
				Expires: time.Now().Add(time.Minute).Unix()}, tmsclient.WithSeq(p.seqs))
			cancel()
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the agent's statistics: %w", ctx.Err())
		}
	}
}

// masterKey loads the demo master key as kek0, wrapped (TR-31 B) under the PIN pad's factory
// transport key, unless the terminal already holds it.
func (p *provisioner) masterKey(ctx context.Context, st *agentStats) error {
	cv, err := kcv.TDES(p.sec.kek, 3)
	if err != nil {
		return err
	}
	want := strings.ToUpper(hex.EncodeToString(cv))
	if k := st.key("kek0"); k != nil && strings.EqualFold(k.KCV, want) {
		fmt.Fprintf(p.out, "provisioned: master key kek0 KCV %s (already loaded)\n", want)
		return nil
	}
	block, err := tr31.Wrap(pinpademu.DefaultTransportKey, tr31.Header{Version: 'B', Usage: "K0", Algorithm: 'T',
		ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, p.sec.kek)
	if err != nil {
		return err
	}
	body, err := tmsproto.Marshal(map[string]any{
		"keys": []map[string]string{{"role": "kek0", "block": block, "kcv": want}},
	})
	if err != nil {
		return err
	}
	if _, err := p.send(ctx, "keys.load", body); err != nil {
		return err
	}
	fmt.Fprintf(p.out, "provisioned: master key kek0 KCV %s\n", want)
	return nil
}

// licence issues a licence for the terminal with the demo release key and installs it, unless
// a valid one covering payments is installed.
func (p *provisioner) licence(ctx context.Context, st *agentStats) error {
	if st.License.State == "valid" && slices.Contains(st.License.Features, "payments") {
		fmt.Fprintf(p.out, "provisioned: licence %s (already installed, %s)\n", st.License.ID, until(st.License.Expires))
		return nil
	}
	now := time.Now()
	l := license.License{V: license.Version, ID: "L-DEMO-" + now.UTC().Format("20060102-150405"), Serial: deviceID,
		Platform: license.CurrentPlatform(), Features: licenceFeatures, Issued: now.Unix(),
		NotBefore: now.Add(-time.Minute).Unix(), Expires: now.AddDate(1, 0, 0).Unix()}
	raw, err := license.Sign(p.sec.releaseKey.Key, p.sec.releaseKey.ID, l)
	if err != nil {
		return err
	}
	// Kept for `tmsctl license show`; the terminal holds its own copy.
	if err := os.WriteFile(filepath.Join(p.dir, licenceFile), raw, 0o644); err != nil {
		return err
	}
	body, err := tmsproto.Marshal(map[string]any{"license": raw})
	if err != nil {
		return err
	}
	if _, err := p.send(ctx, "license.put", body); err != nil {
		return err
	}
	fmt.Fprintf(p.out, "provisioned: licence %s for %s (%s), %s, %s\n", l.ID, l.Serial, l.Platform,
		strings.Join(l.Features, ", "), until(l.Expires))
	return nil
}

func until(expires int64) string {
	if expires == 0 {
		return "never expires"
	}
	return "valid until " + time.Unix(expires, 0).UTC().Format("2006-01-02")
}

// Where the demo shop is: chequeInfo and the slips carry it.
const (
	demoCity    = "Almaty"
	demoAddress = "Abay Ave 1"
	demoTaxID   = "960419351140"
)

// ecrOperations are the operations the cash-register API offers (docs/ecr-api.md), all
// allowed in the demo.
var ecrOperations = []termconfig.Operation{termconfig.OpPayment, termconfig.OpRefund, termconfig.OpVoid,
	termconfig.OpSettlement, termconfig.OpPreAuth, termconfig.OpPreAuthCompletion, termconfig.OpBalance,
	termconfig.OpCashWithdrawal, termconfig.OpTopUp, termconfig.OpReadCard, termconfig.OpEmergencyCancel,
	termconfig.OpReceiptCopy, termconfig.OpFullReport, termconfig.OpShortReport, termconfig.OpEchoTest}

// demoConfig is the terminal configuration of the demo: the factory document with the host
// simulator as the authorisation host and as the QR host (qrURL), the demo terminal's
// identity, the shop's address for the receipts, and every operation of the cash-register API.
func demoConfig(hostAddr, qrURL string) *termconfig.Document {
	doc := termconfig.Default()
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{hostAddr}, TerminalID: demoTID, MerchantID: demoMID,
		MerchantName: demoMerchantName, TPDU: demoTPDU, NII: demoNII, ConnectTimeoutSec: 2, ConnectRetries: 1}
	doc.HostParameters.ResponseTimeoutSec = 10
	doc.AllowedOperations = slices.Clone(ecrOperations)
	doc.QRHosts = []termconfig.QRHost{{Name: "hostsim", URL: qrURL, MerchantID: demoMID, QRLifetimeSec: 120, PollIntervalSec: 1}}
	doc.BINRanges = []termconfig.BINRange{
		{Low: "4", High: "4", Scheme: termconfig.SchemeVisa, Region: termconfig.RegionForeign},
		{Low: "5", High: "5", Scheme: termconfig.SchemeMastercard, Region: termconfig.RegionForeign},
		{Low: "62", High: "62", Scheme: termconfig.SchemeUnionPay, Region: termconfig.RegionDomestic},
	}
	doc.PrintProfile.MerchantCopy = termconfig.CopyElectronic
	doc.PrintProfile.CustomerCopy = termconfig.CopyPrint
	doc.PrintProfile.StoreName, doc.PrintProfile.City = demoMerchantName, demoCity
	doc.PrintProfile.Address, doc.PrintProfile.TaxID = demoAddress, demoTaxID
	return doc
}

// fitsDemo says whether a configuration applied earlier (possibly edited by hand) still
// serves the demo: the same host as the same terminal, the same QR host, and every operation
// of the cash-register API allowed. A folder from before the cash-register API fails it and
// gets the new document.
func fitsDemo(prev, want *termconfig.Document) bool {
	if !sameHost(prev.AuthHost, want.AuthHost) || len(prev.QRHosts) == 0 || prev.QRHosts[0].URL != want.QRHosts[0].URL {
		return false
	}
	for _, op := range want.AllowedOperations {
		if !prev.Allows(op) {
			return false
		}
	}
	return true
}

// sameHost says whether a configuration points the terminal at the demo host as the demo
// terminal.
func sameHost(a, b termconfig.AuthHost) bool {
	return slices.Equal(a.Addresses, b.Addresses) && a.TLS == b.TLS && a.TerminalID == b.TerminalID &&
		a.MerchantID == b.MerchantID && a.TPDU == b.TPDU && a.NII == b.NII
}

var staleRE = regexp.MustCompile(`versions up to (\d+)`)

// terminalConfig applies the demo's terminal configuration and keeps it in
// dir/terminal-config.json, the file the printed config.apply example sends. The file applied
// last (possibly edited and applied by hand) is kept while it is the active version and points
// at the host, the QR host and allows the cash-register API's operations (fitsDemo); otherwise
// the demo document goes out under the next version.
func (p *provisioner) terminalConfig(ctx context.Context, st *agentStats) error {
	path := filepath.Join(p.dir, termConfigFile)
	want := demoConfig(p.host.Addr(), "http://"+p.host.HTTPAddr())
	var prev *termconfig.Document
	if b, err := os.ReadFile(path); err == nil {
		prev, _ = termconfig.DecodeJSON(b)
	}
	if prev != nil && prev.Version == st.Config && st.Config > 0 && fitsDemo(prev, want) {
		if changed, err := p.applyConfig(ctx, prev); err == nil {
			p.printConfig(prev, changed)
			return nil
		}
		// Not the active content after all (edited without a new version): replace it.
	}
	want.Version = max(st.Config+1, 2)
	if prev != nil && prev.Version >= want.Version {
		want.Version = prev.Version + 1
	}
	changed, err := p.applyConfig(ctx, want)
	if m := staleRE.FindStringSubmatch(errString(err)); m != nil {
		// Versions above the active one were used before (a rollback): go above them all.
		high, _ := strconv.ParseUint(m[1], 10, 64)
		want.Version = high + 1
		changed, err = p.applyConfig(ctx, want)
	}
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	p.printConfig(want, changed)
	return nil
}

func (p *provisioner) applyConfig(ctx context.Context, doc *termconfig.Document) (changed bool, err error) {
	body, err := termconfig.Encode(doc)
	if err != nil {
		return false, err
	}
	ack, err := p.send(ctx, "config.apply", body)
	if err != nil {
		return false, err
	}
	var res struct {
		Changed bool `cbor:"changed"`
	}
	if err := cbor.Unmarshal(ack.Result, &res); err != nil {
		return false, fmt.Errorf("config.apply result: %w", err)
	}
	return res.Changed, nil
}

func (p *provisioner) printConfig(doc *termconfig.Document, changed bool) {
	note := ""
	if !changed {
		note = ", already active"
	}
	fmt.Fprintf(p.out, "provisioned: host %s, terminal %s, merchant %s %q (terminal configuration version %d%s)\n",
		strings.Join(doc.AuthHost.Addresses, " "), doc.AuthHost.TerminalID, doc.AuthHost.MerchantID,
		doc.AuthHost.MerchantName, doc.Version, note)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
