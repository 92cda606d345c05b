package integration

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/internal/hostsim"
)

// TestECRPowerCuts kills the agent (SIGKILL) while a cash register's card payment runs —
// before the host, while the host has the 0200, after the approval — sometimes with a host
// fault armed (no answer, half an answer frame, on the 0200 or on the reversal), then does
// what a cash register does after the terminal comes back: it polls /v2/status for its
// processId until the status is final and, when that is "unknown", calls /v2/actualize (at
// once, then at most every 10 s) until it says success or fail. The answer must match the
// host's ledger: success ⇔ the purchase is in effect at the host, under the transactionId
// the cash register was given; fail ⇔ nothing of it is in effect. The host's charged total
// always equals the sum of the payments the cash register was told succeeded.
//
// The PIN pad and card reader emulators and the host simulator live in this process and
// outlive the agent; one provisioned data directory serves every cut. The agent restarted
// after a cut is the one the next cut's payment goes to.
//
// POSAGENT_LONG=1: 200 cuts; otherwise 12. POSAGENT_ECRCUT_SEED repeats a run's choices
// (amounts, cards, faults, kill delays; the timing of the agent itself cannot repeat).
func TestECRPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("kills agent processes mid-payment; skipped with -short")
	}
	cuts := 12
	if os.Getenv("POSAGENT_LONG") != "" {
		cuts = 200
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("POSAGENT_ECRCUT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("POSAGENT_ECRCUT_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (POSAGENT_ECRCUT_SEED=%d repeats the choices), %d cuts", seed, seed, cuts)
	rng := mrand.New(mrand.NewPCG(seed, 8))
	began := time.Now()

	r := newECRCutRig(t)
	t.Logf("provisioned in %v", time.Since(began).Round(time.Millisecond))

	// Distinct amounts tell the cuts' ledger entries apart.
	amounts := rng.Perm(500)[:cuts]
	cards := []string{"visa", "unionpay-debit"}
	faultKinds := []hostsim.FaultKind{hostsim.FaultNoAnswer, hostsim.FaultHalfFrame}
	faultMTIs := []string{"0200", "0400"}

	var expected int64 // minor units the cash register was told were paid
	stats := map[string]int{}
	loopStart := time.Now()
	for i := 1; i <= cuts; i++ {
		// A payment with the card already in reaches the host within tens of milliseconds:
		// half the cuts fall in that window (before the host, the host answering, the answer
		// being committed), the others anywhere up to 400 ms.
		window := 400 * time.Millisecond
		if rng.IntN(2) == 0 {
			window = 60 * time.Millisecond
		}
		cut := ecrCut{n: i, of: cuts, seed: seed, amount: int64(amounts[i-1] + 1), card: cards[rng.IntN(len(cards))],
			delay: time.Duration(rng.Int64N(int64(window)/int64(time.Microsecond)+1)) * time.Microsecond}
		if rng.IntN(100) < 30 {
			cut.fault = &hostsim.Fault{Kind: faultKinds[rng.IntN(len(faultKinds))], MTI: faultMTIs[rng.IntN(len(faultMTIs))], Count: 1}
		}
		r.run(&cut)
		if cut.final.Status == "success" {
			expected += cut.amount * ecrCutMinor
		}
		if got := r.host.Charged(ecrCutTID); got != expected {
			r.fatal(&cut, fmt.Sprintf("the host charged %d in all, the cash register was told of %d paid", got, expected))
		}
		stats["host "+cut.atKill+" at the kill, then "+cut.final.Status]++
		if cut.unknown {
			stats["unknown, then actualized"]++
		}
		if cut.fault != nil && cut.faultUsed {
			stats[fmt.Sprintf("fault %s on %s used", cut.fault.Kind, cut.fault.MTI)]++
		}
		if testing.Verbose() {
			t.Logf("%s: %s", cut.label(), cut.summary())
		}
	}
	loopTook := time.Since(loopStart)

	// Nothing in effect at the host that the cash register was not told of as paid.
	paid := map[int64]bool{}
	for _, a := range r.successes {
		paid[a] = true
	}
	for _, e := range r.host.Entries(ecrCutTID) {
		if cutInEffect(e) && !paid[e.Amount] {
			t.Errorf("in effect at the host with no successful process for it: %s", cutFmtHost(e))
		}
	}
	if got := r.host.Charged(ecrCutTID); got != expected {
		t.Errorf("the host charged %d in all; the successful processes add up to %d", got, expected)
	}
	r.child.stop(t)
	seen := r.host.Seen()
	t.Logf("%d cuts in %v (%.0f ms a cut), whole test %v; host saw %d 0200, %d 0400, %d 0800; %v",
		cuts, loopTook.Round(time.Millisecond), float64(loopTook.Milliseconds())/float64(cuts), time.Since(began).Round(time.Millisecond),
		seen["0200"], seen["0400"], seen["0800"], stats)
}

const (
	ecrCutTID = "IT000008"
	ecrCutMID = "898100012340008"
	ecrCutDev = "IT-ECR-CUT"
	// ecrCutMinor converts the API's whole units to the host's minor units: the configured
	// currency has exponent 2.
	ecrCutMinor = 100
	// actualizeEvery is the API's least interval between two /v2/actualize of a process,
	// with a margin for the two clocks' rounding.
	actualizeEvery = 10*time.Second + 200*time.Millisecond
)

// ecrCutRig is the terminal of TestECRPowerCuts: a child agent with the cash-register API on
// a fixed loopback port, the emulators and the host simulator in this process.
type ecrCutRig struct {
	t      *testing.T
	e      *env
	host   *hostsim.Server
	reader *cardemu.Emulator
	cfg    string
	base   string
	client *http.Client
	child  *child
	// successes are the amounts (minor units) of the processes that ended in success.
	successes []int64
}

func newECRCutRig(t *testing.T) *ecrCutRig {
	t.Helper()
	e := newEnv(t, ecrCutDev)
	padCfg, _ := pinpadConfig(t) // the pad types the PIN when asked
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	line, err := pty.Open(t.TempDir(), "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { line.Close() })
	reader := cardemu.Start(line, cardemu.Default(), cardemu.Options{Logger: quiet})
	t.Cleanup(func() { reader.Close() })

	// The API keeps its port across restarts, as a cash register expects: a free one now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	relPub, relKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.configFile(padCfg + fmt.Sprintf(`
[keystore]
backend = "pinpad"

[[devices]]
name = "cardreader"
kind = "cardreader"
[devices.port]
path = %q
baud = 115200

[ecr]
listen = %q

[[license.release_keys]]
id = "rel-1"
public_key = %q
`, line.Path(), addr, base64.StdEncoding.EncodeToString(relPub)))

	kek := randomKey(t)
	host, err := hostsim.New(hostsim.Config{Listen: "127.0.0.1:0",
		Terminals: []hostsim.Terminal{{TID: ecrCutTID, MID: ecrCutMID, KEK: hex.EncodeToString(kek), KeyLayout: hostsim.LayoutDouble}},
		Accounts:  hostsim.DefaultAccounts()})
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })

	r := &ecrCutRig{t: t, e: e, host: host, reader: reader, cfg: cfg, base: "http://" + addr,
		// No kept connections: each request finds the agent that runs now.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 90 * time.Second}}

	// Provisioning, once: the master key into the PIN pad, the licence, the terminal
	// configuration. This agent then takes the first cut's payment.
	r.child = e.startChild(cfg, 0)
	waitFor(t, 30*time.Second, "agent online", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })
	e.provisionPayments(t, kek, relKey, ecrCutTermConfig(t, host.Addr()))
	r.waitAPI(nil)
	return r
}

// ecrCutTermConfig allows card payments (and refunds) through the API against the host
// simulator, with the shortest answer timeout the validation allows and the longest collect
// timeout: no automatic reversal of an uncollected success interferes.
func ecrCutTermConfig(t *testing.T, addr string) []byte {
	t.Helper()
	doc := termconfig.Default()
	doc.Version = 1
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{addr}, TerminalID: ecrCutTID, MerchantID: ecrCutMID,
		MerchantName: "ECR CUT", TPDU: "6000030000", NII: "003", ConnectTimeoutSec: 2}
	doc.HostParameters.ResponseTimeoutSec = 5
	doc.Currencies = []termconfig.Currency{{Numeric: "398", Alpha: "KZT", Exponent: 2, Default: true}}
	doc.BINRanges = []termconfig.BINRange{{Low: "4", High: "5", Scheme: termconfig.SchemeVisa, Region: termconfig.RegionForeign}}
	doc.AllowedOperations = []termconfig.Operation{termconfig.OpPayment, termconfig.OpRefund}
	doc.ECR.CollectTimeoutSec = 3600
	// No printer on this terminal: the merchant's copy goes up electronically.
	doc.PrintProfile.MerchantCopy = termconfig.CopyElectronic
	doc.PrintProfile.CustomerCopy = termconfig.CopyNone
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	body, err := termconfig.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// ecrCut is one cut: what the test chose, and what both sides said.
type ecrCut struct {
	n, of  int
	seed   uint64
	amount int64 // whole units
	card   string
	delay  time.Duration
	fault  *hostsim.Fault

	pid       string
	atKill    string // the host's view of the purchase right after the kill
	faultUsed bool
	history   []string // statuses the cash register saw after the restart
	unknown   bool
	final     status
	dead      string // the killed agent's last output
}

func (c *ecrCut) label() string {
	s := fmt.Sprintf("cut %d/%d (seed %d; %d ₸ by %s, killed %v after the start", c.n, c.of, c.seed, c.amount, c.card, c.delay.Round(time.Microsecond))
	if c.fault != nil {
		s += fmt.Sprintf(", fault %s on %s", c.fault.Kind, c.fault.MTI)
		if !c.faultUsed {
			s += " unused"
		}
	}
	return s + ")"
}

func (c *ecrCut) summary() string {
	return fmt.Sprintf("process %s, host at the kill: %s; API after the restart: %s",
		c.pid, c.atKill, strings.Join(c.history, " → "))
}

// run carries out one cut on the running agent and leaves the restarted one running.
func (r *ecrCutRig) run(c *ecrCut) {
	t := r.t
	t.Helper()
	if err := r.reader.Insert(c.card); err != nil {
		t.Fatal(err)
	}
	if c.fault != nil {
		if err := r.host.AddFault(*c.fault); err != nil {
			t.Fatal(err)
		}
	}
	c.pid = r.startPayment(c)
	time.Sleep(c.delay)
	r.child.kill()
	c.dead = cutTail(r.child.stderr.String(), 3000)
	ecrCutQuiesce(r.host)
	c.atKill = ecrCutHostState(r.host.Entries(ecrCutTID), c.amount*ecrCutMinor)
	r.reader.Remove()

	// A fault on the 0400 stays armed across the restart: the reversal the new agent owes
	// is what it is meant for.
	r.child = r.e.startChild(r.cfg, 0)
	r.waitAPI(c)
	r.resolve(c)
	c.faultUsed = c.fault != nil && len(r.host.Faults()) == 0
	r.host.ClearFaults()
	ecrCutQuiesce(r.host)
	r.compare(c)
}

// waitAPI waits until the running agent answers /v2/deviceinfo.
func (r *ecrCutRig) waitAPI(c *ecrCut) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := r.get("/v2/deviceinfo", nil)
		if err == nil && rep.StatusCode == 0 && rep.field("terminalId") == ecrCutTID {
			return
		}
		r.checkAlive(c)
		if time.Now().After(deadline) {
			r.fatal(c, fmt.Sprintf("/v2/deviceinfo does not answer within 30 s (last: %v %s)", err, rep.raw))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startPayment starts the cut's payment, as soon as the terminal takes payments (it signs
// in after each start: 106 until then).
func (r *ecrCutRig) startPayment(c *ecrCut) string {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := r.get("/v2/payment", q("amount", strconv.FormatInt(c.amount, 10)))
		switch {
		case err != nil:
			r.fatal(c, fmt.Sprintf("/v2/payment: %v", err))
		case rep.StatusCode == 0 && rep.field("status") == "wait" && rep.field("processId") != "":
			return rep.field("processId")
		case rep.StatusCode != 106:
			r.fatal(c, fmt.Sprintf("/v2/payment: HTTP %d %s", rep.HTTP, rep.raw))
		case time.Now().After(deadline):
			r.fatal(c, fmt.Sprintf("payments still blocked 30 s after the start: %s", rep.raw))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resolve is the cash register after the restart: /v2/status until final, then
// /v2/actualize for an unknown outcome until the host's answer is in.
func (r *ecrCutRig) resolve(c *ecrCut) {
	note := func(s status) {
		h := s.Status + "/" + s.SubStatus
		if s.Message != "" {
			h += fmt.Sprintf(" %q", s.Message)
		}
		if len(c.history) == 0 || c.history[len(c.history)-1] != h {
			c.history = append(c.history, h)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		rep, err := r.get("/v2/status", q("processId", c.pid))
		if err != nil {
			r.fatal(c, fmt.Sprintf("/v2/status: %v", err))
		}
		if rep.StatusCode != 0 {
			r.fatal(c, fmt.Sprintf("/v2/status after the restart: HTTP %d %s", rep.HTTP, rep.raw))
		}
		st := r.decodeStatus(c, rep)
		note(st)
		if st.Status != "wait" {
			c.final = st
			break
		}
		if time.Now().After(deadline) {
			r.fatal(c, "the process stays \"wait\" 60 s after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.final.Status != "unknown" {
		return
	}
	c.unknown = true
	deadline = time.Now().Add(3 * time.Minute)
	for first := true; ; first = false {
		if !first {
			time.Sleep(actualizeEvery)
		}
		rep, err := r.get("/v2/actualize", q("processId", c.pid))
		if err != nil {
			r.fatal(c, fmt.Sprintf("/v2/actualize: %v", err))
		}
		c.history = append(c.history, fmt.Sprintf("actualize: %d %s", rep.StatusCode, rep.ErrorText))
		switch rep.StatusCode {
		case 0:
			st := r.decodeStatus(c, rep)
			note(st)
			c.final = st
			if st.Status == "success" || st.Status == "fail" {
				return
			}
			if st.Status != "unknown" {
				r.fatal(c, fmt.Sprintf("/v2/actualize answered %q", st.Status))
			}
		case 100: // the reversal did not get through yet
		case 105:
			if first {
				r.fatal(c, fmt.Sprintf("the first /v2/actualize refused: %s", rep.raw))
			}
		default:
			r.fatal(c, fmt.Sprintf("/v2/actualize: HTTP %d %s", rep.HTTP, rep.raw))
		}
		if time.Now().After(deadline) {
			r.fatal(c, "the outcome is still unknown 3 minutes after the restart, with the host reachable")
		}
	}
}

func (r *ecrCutRig) decodeStatus(c *ecrCut, rep reply) status {
	var st status
	if err := json.Unmarshal(rep.Data, &st); err != nil {
		r.fatal(c, fmt.Sprintf("status data %s: %v", rep.raw, err))
	}
	if st.ProcessID != c.pid {
		r.fatal(c, fmt.Sprintf("asked for process %s, answered for %s", c.pid, st.ProcessID))
	}
	return st
}

// compare checks the cash register's outcome against the host's ledger.
func (r *ecrCutRig) compare(c *ecrCut) {
	var inEffect []hostsim.Entry
	for _, e := range ecrCutEntries(r.host.Entries(ecrCutTID), c.amount*ecrCutMinor) {
		if cutInEffect(e) {
			inEffect = append(inEffect, e)
		}
	}
	switch c.final.Status {
	case "success":
		switch {
		case len(inEffect) != 1:
			r.fatal(c, fmt.Sprintf("success at the terminal, %d entries in effect at the host", len(inEffect)))
		case inEffect[0].State != hostsim.StateApproved:
			r.fatal(c, "success at the terminal, "+inEffect[0].State+" at the host")
		case inEffect[0].RRN != c.final.TransactionID:
			r.fatal(c, fmt.Sprintf("success under transactionId %q; the host's entry has RRN %q", c.final.TransactionID, inEffect[0].RRN))
		case c.final.ChequeInfo["amount"] != fmt.Sprintf("%d ₸", c.amount):
			r.fatal(c, fmt.Sprintf("success with chequeInfo.amount %v", c.final.ChequeInfo["amount"]))
		}
		r.successes = append(r.successes, c.amount*ecrCutMinor)
	case "fail":
		if len(inEffect) != 0 {
			r.fatal(c, fmt.Sprintf("fail at the terminal, %d entries in effect at the host", len(inEffect)))
		}
	default:
		r.fatal(c, "final status "+c.final.Status)
	}
}

// fatal fails the test with the cut, both views and the agents' last output.
func (r *ecrCutRig) fatal(c *ecrCut, msg string) {
	t := r.t
	t.Helper()
	if c == nil {
		r.child.kill()
		t.Fatalf("%s\nthe agent's output:\n%s", msg, cutTail(r.child.stderr.String(), 6000))
	}
	r.child.kill() // its output can be read once it is dead
	var host []string
	for _, e := range ecrCutEntries(r.host.Entries(ecrCutTID), c.amount*ecrCutMinor) {
		host = append(host, cutFmtHost(e))
		for _, rv := range r.host.ReversalLog(ecrCutTID) {
			if rv.Batch == e.Batch && rv.Trace == e.Trace {
				host = append(host, cutFmtRev(rv))
			}
		}
	}
	if len(host) == 0 {
		host = append(host, "nothing for this amount")
	}
	t.Fatalf("%s: %s\n  cash register: %s\n  host now: charged %d in all\n    %s\n  the killed agent's output:\n%s\n  the restarted agent's output:\n%s",
		c.label(), msg, c.summary(), r.host.Charged(ecrCutTID), strings.Join(host, "\n    "), c.dead, cutTail(r.child.stderr.String(), 6000))
}

// checkAlive fails the test when the agent process has ended by itself.
func (r *ecrCutRig) checkAlive(c *ecrCut) {
	select {
	case err := <-r.child.done:
		r.child.done <- err
		r.fatal(c, fmt.Sprintf("the agent exited by itself: %v", err))
	default:
	}
}

// get is one API call as a cash register makes it; a transport error (the agent not
// listening yet) is returned, not fatal.
func (r *ecrCutRig) get(path string, v url.Values) (reply, error) {
	u := r.base + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return reply{}, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	var rep reply
	if err := json.Unmarshal(b, &rep); err != nil {
		return reply{}, fmt.Errorf("%w: not an envelope: %q", errECRCutEnvelope, b)
	}
	rep.HTTP, rep.raw = resp.StatusCode, string(b)
	return rep, nil
}

var errECRCutEnvelope = errors.New("ecr cut: bad answer")

// ecrCutEntries are the host's purchases of one amount (minor units).
func ecrCutEntries(all []hostsim.Entry, amount int64) []hostsim.Entry {
	var out []hostsim.Entry
	for _, e := range all {
		if e.Op == hostsim.OpPurchase && e.Amount == amount {
			out = append(out, e)
		}
	}
	return out
}

// ecrCutHostState names what the host holds of one amount's purchase.
func ecrCutHostState(all []hostsim.Entry, amount int64) string {
	es := ecrCutEntries(all, amount)
	if len(es) == 0 {
		return "nothing"
	}
	states := make([]string, len(es))
	for i, e := range es {
		states[i] = e.State
	}
	return strings.Join(states, "+")
}

// ecrCutQuiesce waits until the host has handled whatever a killed agent's last frames
// carried: its count of messages seen stops moving.
func ecrCutQuiesce(h *hostsim.Server) {
	total := func() int {
		n := 0
		for _, v := range h.Seen() {
			n += v
		}
		return n
	}
	prev := total()
	for range 50 {
		time.Sleep(30 * time.Millisecond)
		n := total()
		if n == prev {
			return
		}
		prev = n
	}
}
