package integration

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/iso8583"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/hostsim"
)

// TestPaymentsPowerCuts kills the agent (SIGKILL) at random points while it makes purchases,
// voids and settlements against the host simulator — sometimes with a host fault armed for
// the next message (no answer, half an answer frame, a bad MAC), so that cuts also land in
// doubt, in reversals, in settlements and in batch uploads. The host simulator and the PIN
// pad emulator live in this process and survive the agent's deaths.
//
// After every cut, with the agent dead, the test reads the agent's database (read-only) and
// compares the terminal's batch with the host's ledger:
//
//   - nothing charged that the terminal does not know: every host entry in effect of a batch
//     the host has not closed is a transaction of the terminal, approved (or voided, for a
//     voided purchase) or still in doubt with its reversal owed;
//   - what the terminal holds as approved, declined or reversed is so at the host;
//   - every transaction the terminal put in doubt is reversed: the host saw no more 0400s for
//     it than the terminal journaled attempts (the retry limit at most), never a 0400 for a
//     transaction the terminal did not put in doubt, and once the terminal says reversed (or
//     cleared the batch) the host has it undone;
//   - a settlement balances: a batch the host closed without an upload had equal totals on
//     both sides; only a batch holding a card the terminal's BIN table misclassifies on purpose
//     (or a reversal held for a person) settles unbalanced, and then the host saw every
//     transaction of the batch uploaded, re-sent at most once per interruption (the upload
//     resumed, it did not start over); nothing is charged into a batch after the host closed it.
//
// The comparison happens at the cut, before the restarted agent delivers what it owes; what
// is owed at a cut is checked at the next cuts (and at the end, after a last recovery and
// settlement), so a reversal that never comes fails the test.
//
// POSAGENT_LONG=1: 300 cuts; otherwise 24.
func TestPaymentsPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("kills agent processes for a minute; skipped with -short")
	}
	cuts := 24
	if os.Getenv("POSAGENT_LONG") != "" {
		cuts = 300
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d cuts", seed, cuts)
	rng := mrand.New(mrand.NewPCG(seed, 7))
	began := time.Now()

	const dev = "IT-PAY-CUT"
	e := newEnv(t, dev)
	padCfg, _ := pinpadConfig(t)
	relPub, relKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.configFile(padCfg + "\n[keystore]\nbackend = \"pinpad\"\n" +
		fmt.Sprintf("\n[[license.release_keys]]\nid = %q\npublic_key = %q\n", "rel-1", base64.StdEncoding.EncodeToString(relPub)))

	kek := randomKey(t)
	host, err := hostsim.New(hostsim.Config{Listen: "127.0.0.1:0",
		Terminals: []hostsim.Terminal{{TID: cutTID, MID: cutMID, KEK: hex.EncodeToString(kek), KeyLayout: hostsim.LayoutDouble}},
		Accounts:  hostsim.DefaultAccounts()})
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })

	// Provisioning, once: the master key into the PIN pad, the licence, the terminal
	// configuration with the host.
	c := e.startChild(cfg, 0)
	waitFor(t, 30*time.Second, "agent online", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })
	e.provisionPayments(t, kek, relKey, cutTermConfig(t, host.Addr()))
	c.stop(t)
	t.Logf("provisioned in %v", time.Since(began).Round(time.Millisecond))

	pc := newCutChecker(t, host, filepath.Join(e.dataDir(), "posagent.db"))
	t.Setenv(envPayCut, "load")
	kinds := []hostsim.FaultKind{hostsim.FaultNoAnswer, hostsim.FaultHalfFrame, hostsim.FaultBadMAC}
	mtis := []string{"0200", "0200", "0200", "0200", "0200", "0400", "0400", "0500", "0320", "0320"}
	loopStart := time.Now()
	for i := 1; i <= cuts; i++ {
		var fault *hostsim.Fault
		if rng.IntN(100) < 40 {
			fault = &hostsim.Fault{Kind: kinds[rng.IntN(len(kinds))], MTI: mtis[rng.IntN(len(mtis))], Count: 1}
			if err := host.AddFault(*fault); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := host.Terminal(cutTID)
		c = e.startChild(cfg, 0)
		var where string
		if rng.IntN(4) == 0 {
			// Anywhere from the start: opening, sign-in, owed reversals, a settlement resumed.
			d := time.Duration(rng.IntN(400)) * time.Millisecond
			where = fmt.Sprintf("%v after start", d)
			time.Sleep(d)
		} else {
			deadline := time.Now().Add(30 * time.Second)
			for {
				if ts, _ := host.Terminal(cutTID); ts.SignIns > before.SignIns {
					break
				}
				select {
				case err := <-c.done:
					c.done <- err
					t.Fatalf("cut %d: the agent exited before signing in: %v\n%s", i, err, cutTail(c.stderr.String(), 4000))
				default:
				}
				if time.Now().After(deadline) {
					c.kill()
					t.Fatalf("cut %d: the agent did not sign in within 30 s\n%s", i, cutTail(c.stderr.String(), 4000))
				}
				time.Sleep(5 * time.Millisecond)
			}
			d := time.Duration(10+rng.IntN(390)) * time.Millisecond
			where = fmt.Sprintf("%v after sign-in", d)
			time.Sleep(d)
		}
		c.kill()
		consumed := fault != nil && len(host.Faults()) == 0
		host.ClearFaults()
		pc.quiesce()
		label := fmt.Sprintf("cut %d/%d (%s", i, cuts, where)
		if fault != nil {
			label += fmt.Sprintf(", fault %s on %s", fault.Kind, fault.MTI)
			if !consumed {
				label += " unused"
			}
		}
		label += ")"
		if consumed {
			pc.faults[string(fault.Kind)+" "+fault.MTI]++
		}
		pc.check(label, consumed && fault.MTI == "0320", false, c)
	}
	loopTook := time.Since(loopStart)

	// The last start: the agent recovers, delivers what it owes, settles and stops itself.
	t.Setenv(envPayCut, "settle")
	c = e.startChild(cfg, 0)
	select {
	case err := <-c.done:
		c.done <- nil
		if err != nil {
			t.Fatalf("final recovery: agent exit %v\n%s", err, cutTail(c.stderr.String(), 4000))
		}
	case <-time.After(60 * time.Second):
		c.kill()
		t.Fatalf("final recovery and settlement did not finish within 60 s\n%s", cutTail(c.stderr.String(), 4000))
	}
	pc.quiesce()
	pc.check("after the final recovery and settlement", false, true, c)

	seen := host.Seen()
	t.Logf("%d cuts in %v (%.0f ms a cut), whole test %v; host saw %d 0200, %d 0400, %d 0500, %d 0320, %d 0800",
		cuts, loopTook.Round(time.Millisecond), float64(loopTook.Milliseconds())/float64(cuts), time.Since(began).Round(time.Millisecond),
		seen["0200"], seen["0400"], seen["0500"], seen["0320"], seen["0800"])
	t.Logf("transactions: %d seen by the terminal, %d put in doubt (%d of them reversals re-sent), %d held for a person; "+
		"settlements: %d balanced, %d unbalanced with an upload (%d uploads interrupted and resumed, %d transactions uploaded twice); faults used: %v",
		len(pc.seen), pc.doubts(), pc.resentReversals(), pc.heldCount(), pc.balanced, pc.unbalanced, pc.resumed, pc.reuploaded, pc.faults)
}

const (
	cutTID = "IT000001"
	cutMID = "898100012340001"
	// The terminal configuration's resendCount: reversal attempts before a person is asked.
	cutReversalTries = 3
)

// cutTermConfig is the terminal configuration the TMS applies: the host simulator, the
// shortest answer timeout the validation allows, three reversal attempts, and a BIN table
// with Visa foreign and Mastercard left out (so domestic: see cutCardUnbalancing).
func cutTermConfig(t *testing.T, addr string) []byte {
	t.Helper()
	doc := termconfig.Default()
	doc.Version = 1
	doc.AuthHost = termconfig.AuthHost{Addresses: []string{addr}, TerminalID: cutTID, MerchantID: cutMID,
		TPDU: "6000030000", NII: "003", ConnectTimeoutSec: 2}
	doc.HostParameters.ResponseTimeoutSec = 5
	doc.HostParameters.ResendCount = cutReversalTries
	doc.Currencies = []termconfig.Currency{{Numeric: "156", Alpha: "CNY", Exponent: 2, Default: true}}
	doc.BINRanges = []termconfig.BINRange{{Low: "4", High: "4", Scheme: termconfig.SchemeVisa, Region: termconfig.RegionForeign}}
	doc.AllowedOperations = []termconfig.Operation{termconfig.OpPayment, termconfig.OpVoid, termconfig.OpSettlement}
	if err := doc.Validate(); err != nil {
		t.Fatal(err)
	}
	body, err := termconfig.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func cutTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ---- the terminal's view: the agent's database, read-only ----

// cutRef names a transaction on both sides: batch and trace number.
type cutRef struct{ batch, stan int }

func (r cutRef) String() string { return fmt.Sprintf("batch %d trace %06d", r.batch, r.stan) }

// cutMeta mirrors the engine's meta record (bucket "payment", key "meta"): the fields the
// test reads.
type cutMeta struct {
	State  string     `cbor:"state"`
	Batch  int        `cbor:"batch"`
	STAN   int        `cbor:"stan"`
	Seq    uint64     `cbor:"seq"`
	Settle *cutSettle `cbor:"settle"`
}

type cutSettle struct {
	Batch      int                      `cbor:"batch"`
	Totals     payment.SettlementTotals `cbor:"totals"`
	Answered   bool                     `cbor:"answered"`
	Upload     bool                     `cbor:"upload"`
	Uploaded   []string                 `cbor:"uploaded"`
	UploadDone bool                     `cbor:"uploadDone"`
}

type cutTermView struct {
	meta cutMeta
	txns map[cutRef]payment.Txn
	byID map[string]payment.Txn
}

// readCutTermView reads the stopped agent's payment records without writing a byte: the state
// the next start will find.
func readCutTermView(path string) (cutTermView, error) {
	v := cutTermView{txns: map[cutRef]payment.Txn{}, byID: map[string]payment.Txn{}}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return v, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("payment"))
		if b == nil {
			return nil
		}
		if raw := b.Get([]byte("meta")); raw != nil {
			if err := cbor.Unmarshal(raw, &v.meta); err != nil {
				return fmt.Errorf("meta: %w", err)
			}
		}
		tb := b.Bucket([]byte("txns"))
		if tb == nil {
			return nil
		}
		return tb.ForEach(func(k, raw []byte) error {
			var t payment.Txn
			if err := cbor.Unmarshal(raw, &t); err != nil {
				return fmt.Errorf("transaction %s: %w", k, err)
			}
			v.txns[cutRef{t.Batch, t.STAN}] = t
			v.byID[t.ID] = t
			return nil
		})
	})
	return v, err
}

// ---- the host's view ----

type cutHostView struct {
	entries map[cutRef]hostsim.Entry
	revs    map[cutRef]hostsim.Reversal
	term    hostsim.TerminalStatus
	closed  map[int]bool
}

func readCutHostView(h *hostsim.Server) cutHostView {
	v := cutHostView{entries: map[cutRef]hostsim.Entry{}, revs: map[cutRef]hostsim.Reversal{}, closed: map[int]bool{}}
	for _, e := range h.Entries(cutTID) {
		if e.Op == hostsim.OpQR {
			continue
		}
		k := cutRef{e.Batch, e.Trace}
		if old, ok := v.entries[k]; ok && old.State != hostsim.StateUploaded {
			continue // an upload the host did not know never replaces the original
		}
		v.entries[k] = e
	}
	for _, r := range h.ReversalLog(cutTID) {
		v.revs[cutRef{r.Batch, r.Trace}] = r
	}
	v.term, _ = h.Terminal(cutTID)
	for _, b := range v.term.Closed {
		v.closed[b] = true
	}
	return v
}

func cutInEffect(e hostsim.Entry) bool {
	return e.State == hostsim.StateApproved || e.State == hostsim.StateVoided || e.State == hostsim.StateCompleted
}

// cutMisclassified: a card the terminal's BIN table puts on the other side than the host does.
func cutMisclassified(maskedPAN string) bool {
	return maskedPAN == payment.MaskPAN(cutCardUnbalancing.pan)
}

// ---- the checks ----

// cutSeen is what the test learnt of one terminal transaction over the cuts.
type cutSeen struct {
	last  payment.Txn
	doubt bool // seen pending, reversing, reversed or held: the terminal put it in doubt
	held  bool
	gone  bool // cleared from the terminal (its batch settled)
}

type cutChecker struct {
	t    *testing.T
	host *hostsim.Server
	db   string

	seen map[cutRef]*cutSeen
	// Closed batches verified, with their count of host entries in effect then.
	verified map[int]int
	// uploadCuts counts the interruptions of each batch's upload: cuts during it, and 0320
	// faults in the batch range of a cut (lo..hi).
	uploadCuts   map[int]int
	uploadFaults [][2]int
	lastBatch    int
	settleTotals map[int]payment.SettlementTotals

	// keepGoing (POSAGENT_PAYCUT_KEEPGOING=1) reports broken invariants and carries on, to
	// see every kind of failure of one run; later reports may be consequences of earlier ones.
	keepGoing bool
	reported  map[string]bool

	faults               map[string]int
	balanced, unbalanced int
	resumed, reuploaded  int
}

func newCutChecker(t *testing.T, host *hostsim.Server, db string) *cutChecker {
	return &cutChecker{t: t, host: host, db: db, seen: map[cutRef]*cutSeen{}, verified: map[int]int{},
		uploadCuts: map[int]int{}, settleTotals: map[int]payment.SettlementTotals{}, faults: map[string]int{}, lastBatch: 1,
		keepGoing: os.Getenv("POSAGENT_PAYCUT_KEEPGOING") != "", reported: map[string]bool{}}
}

// quiesce waits until the host has handled whatever the killed agent's last frames carried.
func (pc *cutChecker) quiesce() {
	total := func() int {
		n := 0
		for _, v := range pc.host.Seen() {
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

func (pc *cutChecker) doubts() int {
	n := 0
	for _, s := range pc.seen {
		if s.doubt {
			n++
		}
	}
	return n
}

func (pc *cutChecker) heldCount() int {
	n := 0
	for _, s := range pc.seen {
		if s.held {
			n++
		}
	}
	return n
}

func (pc *cutChecker) resentReversals() int {
	n := 0
	for _, r := range pc.host.ReversalLog(cutTID) {
		if r.Count > 1 {
			n++
		}
	}
	return n
}

func cutDoubtful(s payment.State) bool {
	return s == payment.StatePending || s == payment.StateReversing || s == payment.StateHeld
}

func cutFmtTerm(t payment.Txn) string {
	s := fmt.Sprintf("terminal: id %s batch %d trace %06d %-8s %9d %s %-9s", t.ID, t.Batch, t.STAN, t.Op, t.Amount, t.PAN, t.State)
	if t.RespCode != "" {
		s += " resp " + t.RespCode
	}
	if t.DoubtReason != "" {
		s += fmt.Sprintf(" doubt %q", t.DoubtReason)
	}
	if t.ReversalTries > 0 {
		s += fmt.Sprintf(" reversal attempts %d", t.ReversalTries)
	}
	if t.Orig != nil {
		s += fmt.Sprintf(" original id %s batch %d trace %06d", t.Orig.ID, t.Orig.Batch, t.Orig.STAN)
	}
	return s
}

func cutFmtHost(e hostsim.Entry) string {
	s := fmt.Sprintf("host:     batch %d trace %06d %-8s %9d %s %-9s resp %s", e.Batch, e.Trace, e.Op, e.Amount, payment.MaskPAN(e.PAN), e.State, e.RespCode)
	if e.Orig != nil {
		s += fmt.Sprintf(" original batch %d trace %06d", e.Orig.Batch, e.Orig.Trace)
	}
	if e.Uploaded {
		s += " uploaded"
	}
	return s
}

func cutFmtRev(r hostsim.Reversal) string {
	return fmt.Sprintf("host 0400s for batch %d trace %06d: %d (found %v, undid %v: %s)", r.Batch, r.Trace, r.Count, r.Found, r.Undid, r.Note)
}

// describe is both sides' view of one transaction (and of its void or original).
func (pc *cutChecker) describe(k cutRef, tv cutTermView, hv cutHostView) string {
	var lines []string
	add := func(k cutRef) {
		if t, ok := tv.txns[k]; ok {
			lines = append(lines, cutFmtTerm(t))
		} else if s, ok := pc.seen[k]; ok {
			lines = append(lines, cutFmtTerm(s.last)+" (last seen; cleared since)")
		} else {
			lines = append(lines, fmt.Sprintf("terminal: nothing for %v", k))
		}
		if e, ok := hv.entries[k]; ok {
			lines = append(lines, cutFmtHost(e))
		} else {
			lines = append(lines, fmt.Sprintf("host:     nothing for %v", k))
		}
		if r, ok := hv.revs[k]; ok {
			lines = append(lines, cutFmtRev(r))
		}
	}
	add(k)
	related := map[cutRef]bool{k: true}
	if t, ok := tv.txns[k]; ok && t.Orig != nil {
		related[cutRef{t.Orig.Batch, t.Orig.STAN}] = true
	}
	if e, ok := hv.entries[k]; ok && e.Orig != nil {
		related[cutRef{e.Orig.Batch, e.Orig.Trace}] = true
	}
	for _, t := range tv.txns { // the voids of this one
		if t.Orig != nil && t.Orig.Batch == k.batch && t.Orig.STAN == k.stan {
			related[cutRef{t.Batch, t.STAN}] = true
		}
	}
	for _, e := range hv.entries {
		if e.Orig != nil && e.Orig.Batch == k.batch && e.Orig.Trace == k.stan {
			related[cutRef{e.Batch, e.Trace}] = true
		}
	}
	var more []cutRef
	for r := range related {
		if r != k {
			more = append(more, r)
		}
	}
	slices.SortFunc(more, func(a, b cutRef) int { return a.stan - b.stan })
	for _, r := range more {
		lines = append(lines, "  related:")
		add(r)
	}
	return "    " + strings.Join(lines, "\n    ")
}

// check compares the terminal's database with the host's ledger after a cut; final: after the
// last recovery and settlement, nothing may be owed or unsettled.
func (pc *cutChecker) check(label string, upload0320Fault, final bool, c *child) {
	t := pc.t
	t.Helper()
	tv, err := readCutTermView(pc.db)
	if err != nil {
		t.Fatalf("%s: reading the agent's database: %v", label, err)
	}
	hv := readCutHostView(pc.host)
	var bad []string
	fail := func(invariant string, k cutRef, format string, args ...any) {
		id := fmt.Sprintf("%s %v %s", invariant, k, format)
		if pc.reported[id] {
			return // keep-going mode: said already
		}
		pc.reported[id] = true
		bad = append(bad, fmt.Sprintf("INVARIANT %s — %v: %s\n%s", invariant, k, fmt.Sprintf(format, args...), pc.describe(k, tv, hv)))
	}

	// Batches this cut may have touched, for the upload interruptions.
	lo, hi := pc.lastBatch, tv.meta.Batch
	if s := tv.meta.Settle; s != nil {
		lo, hi = min(lo, s.Batch), max(hi, s.Batch)
		if s.Upload && !s.UploadDone {
			pc.uploadCuts[s.Batch]++
		}
		pc.settleTotals[s.Batch] = s.Totals
	}
	if upload0320Fault {
		pc.uploadFaults = append(pc.uploadFaults, [2]int{min(lo, hi), max(lo, hi)})
	}
	pc.lastBatch = tv.meta.Batch

	// What the terminal holds over time: a transaction in doubt never comes back approved or
	// declined; a final one never goes back into doubt.
	for k, tx := range tv.txns {
		s := pc.seen[k]
		if s == nil {
			s = &cutSeen{}
			pc.seen[k] = s
		} else {
			was, now := s.last.State, tx.State
			switch {
			case (was == payment.StatePending || was == payment.StateReversing) &&
				(now == payment.StateApproved || now == payment.StateDeclined || now == payment.StateVoided):
				fail("in doubt stays in doubt until reversed", k, "was %s, now %s", was, now)
			case (was == payment.StateApproved || was == payment.StateDeclined || was == payment.StateReversed) &&
				(now == payment.StatePending || now == payment.StateReversing):
				fail("a final outcome is final", k, "was %s, now %s", was, now)
			}
		}
		s.last, s.gone = tx, false
		if cutDoubtful(tx.State) || tx.State == payment.StateReversed {
			s.doubt = true
		}
		if tx.State == payment.StateHeld {
			s.held = true
		}
	}
	for k, s := range pc.seen {
		if _, ok := tv.txns[k]; !ok {
			s.gone = true
		}
	}

	// 1. Nothing charged that the terminal does not know.
	for k, e := range hv.entries {
		if e.State == hostsim.StateUploaded {
			fail("nothing charged that the terminal does not know", k, "the terminal uploaded a transaction the host never approved")
			continue
		}
		if !cutInEffect(e) {
			continue
		}
		tx, ok := tv.txns[k]
		if !ok {
			if !hv.closed[e.Batch] {
				fail("nothing charged that the terminal does not know", k, "in effect at the host, unknown to the terminal (batch not settled)")
			}
			continue
		}
		if tx.Op != payment.Op(e.Op) || tx.Amount != e.Amount || tx.PAN != payment.MaskPAN(e.PAN) {
			fail("both sides name the same transaction", k, "operation, amount or card differ")
			continue
		}
		if cutDoubtful(tx.State) {
			continue // its reversal is owed (or held for a person)
		}
		switch {
		case tx.State == payment.StateDeclined || tx.State == payment.StateReversed:
			fail("nothing charged that the terminal does not know", k, "charged at the host, %s at the terminal", tx.State)
		case e.Op == hostsim.OpPurchase && e.State == hostsim.StateVoided:
			if tx.State != payment.StateVoided && !pc.voidInDoubt(tv, tx.ID) {
				fail("nothing charged that the terminal does not know", k, "voided at the host, %s at the terminal with no void in doubt", tx.State)
			}
		case tx.State != payment.StateApproved:
			fail("nothing charged that the terminal does not know", k, "%s at the host, %s at the terminal", e.State, tx.State)
		}
	}

	// 2. What the terminal holds as final is so at the host.
	for k, tx := range tv.txns {
		e, ok := hv.entries[k]
		switch tx.State {
		case payment.StateApproved:
			switch {
			case !ok || !cutInEffect(e):
				fail("approved at the terminal means charged at the host", k, "the host has it %s", cutHostState(e, ok))
			case e.Op == hostsim.OpPurchase && e.State == hostsim.StateVoided && !pc.voidInDoubt(tv, tx.ID):
				fail("approved at the terminal means charged at the host", k, "the host voided it; the terminal has no void of it in doubt")
			}
		case payment.StateVoided:
			if !ok || e.State != hostsim.StateVoided {
				fail("voided at the terminal means voided at the host", k, "the host has it %s", cutHostState(e, ok))
			}
		case payment.StateDeclined:
			if ok && cutInEffect(e) {
				fail("declined at the terminal means not charged", k, "the host has it %s", e.State)
			}
		case payment.StateReversed:
			if ok && cutInEffect(e) {
				fail("every doubtful transaction reversed", k, "reversed at the terminal, still %s at the host", e.State)
			}
			if _, rev := hv.revs[k]; !rev {
				fail("every doubtful transaction reversed", k, "reversed at the terminal, but the host recorded no 0400 for this trace")
			}
		}
	}

	// 3. Reversals: only for what the terminal put in doubt, never more than it attempted.
	for k, r := range hv.revs {
		if r.Count > cutReversalTries {
			fail("every doubtful transaction reversed exactly once", k, "%d 0400s, more than the %d attempts allowed", r.Count, cutReversalTries)
		}
		if tx, ok := tv.txns[k]; ok {
			if !cutDoubtful(tx.State) && tx.State != payment.StateReversed {
				fail("a reversal only for a transaction in doubt", k, "the host got a 0400 for a transaction the terminal holds as %s", tx.State)
			} else if r.Count > tx.ReversalTries {
				fail("every doubtful transaction reversed exactly once", k, "the host got %d 0400s, the terminal journaled %d attempts", r.Count, tx.ReversalTries)
			}
		} else if s, ok := pc.seen[k]; ok && !s.doubt {
			fail("a reversal only for a transaction in doubt", k, "the host got a 0400 for a transaction the terminal last held as %s", s.last.State)
		}
	}
	// A transaction put in doubt and cleared since (its batch settled, which reverses first)
	// is undone at the host, unless it was held for a person.
	for k, s := range pc.seen {
		if !s.doubt || !s.gone || s.held {
			continue
		}
		if e, ok := hv.entries[k]; ok && cutInEffect(e) {
			fail("every doubtful transaction reversed", k, "put in doubt, its batch settled, still %s at the host", e.State)
		}
	}

	// 4. Settlements. The terminal never holds a transaction of a batch the host closed,
	// except the batch it is still settling (the host's answer came, its commit did not):
	// what goes into a closed batch is never compared by a settlement.
	for k, tx := range tv.txns {
		settling := tv.meta.Settle != nil && tv.meta.Settle.Batch == k.batch
		if k.batch != tv.meta.Batch && !settling {
			fail("the batch holds every transaction not settled yet", k, "%s (%s) of batch %d, outside the terminal's batch %d with no settlement of it in progress: no settlement will count it",
				tx.Op, tx.State, k.batch, tv.meta.Batch)
		}
		if hv.closed[k.batch] && !settling {
			fail("nothing charged into a settled batch", k, "the terminal holds a %s (%s) in batch %d, which the host closed (terminal batch %d, settling %v)",
				tx.Op, tx.State, k.batch, tv.meta.Batch, cutSettling(tv))
		}
	}
	for b := range hv.closed {
		n := 0
		var effect []hostsim.Entry
		for _, e := range hv.entries {
			if e.Batch == b && cutInEffect(e) {
				n++
				effect = append(effect, e)
			}
		}
		if was, ok := pc.verified[b]; ok {
			if n != was {
				fail("settlement balances", cutRef{b, 0}, "%d entries in effect in batch %d after the host closed it with %d", n, b, was)
			}
			continue
		}
		pc.verified[b] = n
		expect := ""
		for _, e := range effect {
			if cutMisclassified(payment.MaskPAN(e.PAN)) {
				expect = "a Mastercard the terminal counts as domestic"
			}
			if s, ok := pc.seen[cutRef{e.Batch, e.Trace}]; ok && s.held {
				expect = "a reversal held for a person"
			}
		}
		uploads := hv.term.Uploads[b]
		hostTotals := pc.host.BatchTotals(cutTID, b)
		if st, ok := pc.settleTotals[b]; ok && st.DomBalanced && st.ForBalanced && !cutSameTotals(st, hostTotals) {
			fail("settlement balances", cutRef{b, 0}, "the terminal recorded batch %d balanced with %s; the host's totals are %s", b, cutFmtTotals(st), hostTotals.Encode())
		}
		switch {
		case uploads == 0 && expect == "":
			pc.balanced++
		case uploads == 0:
			fail("settlement balances", cutRef{b, 0}, "batch %d closed balanced although it holds %s", b, expect)
		case expect == "":
			st, seen := pc.settleTotals[b]
			term := "not seen at a cut"
			if seen {
				term = cutFmtTotals(st)
			}
			bad = append(bad, fmt.Sprintf("INVARIANT settlement balances — batch %d settled unbalanced (%d uploads); host totals %s, terminal totals %s; the host's entries in effect:\n%s",
				b, uploads, hostTotals.Encode(), term, pc.describeBatch(b, tv, hv)))
		default:
			pc.unbalanced++
			notUp := 0
			for _, e := range effect {
				if !e.Uploaded {
					notUp++
					fail("batch upload complete", cutRef{e.Batch, e.Trace}, "in effect in the unbalanced batch %d, never uploaded", b)
				}
			}
			allowed := pc.uploadCuts[b]
			for _, r := range pc.uploadFaults {
				if b >= r[0] && b <= r[1] {
					allowed++
				}
			}
			// Each transaction the host matched an upload to, plus the uploads it did not
			// know: what the upload sent once each.
			distinct := 0
			for _, e := range hv.entries {
				if e.Batch == b && e.Uploaded {
					distinct++
				}
			}
			extra := uploads - distinct
			if allowed > 0 {
				pc.resumed++
			}
			pc.reuploaded += max(extra, 0)
			if notUp == 0 && (extra < 0 || extra > allowed) {
				bad = append(bad, fmt.Sprintf("INVARIANT batch upload resumed — batch %d: the host saw %d uploads for %d transactions with %d interruptions (at most one re-sent upload each)\n%s",
					b, uploads, distinct, allowed, pc.describeBatch(b, tv, hv)))
			}
		}
	}

	if final {
		if s := tv.meta.Settle; s != nil {
			bad = append(bad, fmt.Sprintf("INVARIANT settlement completes — a settlement of batch %d is still in progress", s.Batch))
		}
		for k, tx := range tv.txns {
			if tx.State == payment.StatePending || tx.State == payment.StateReversing {
				fail("every doubtful transaction reversed", k, "still owed after the final recovery")
			}
		}
		for k, e := range hv.entries {
			if cutInEffect(e) && !hv.closed[e.Batch] {
				if s, ok := pc.seen[k]; !ok || !s.held {
					fail("settlement balances", k, "in effect at the host in batch %d, which the final settlement did not close", e.Batch)
				}
			}
		}
	}

	if len(bad) > 0 {
		t.Errorf("%s: %d invariant(s) broken (terminal batch %d, host batch %d, terminal settling %s)\n%s",
			label, len(bad), tv.meta.Batch, hv.term.Batch, cutSettling(tv), strings.Join(bad, "\n"))
		if !pc.keepGoing {
			t.Fatalf("the last agent's output:\n%s", cutTail(c.stderr.String(), 6000))
		}
	}
	if testing.Verbose() {
		t.Logf("%s: ok — terminal batch %d (%d transactions), host batch %d, settling %s, host closed %d batches",
			label, tv.meta.Batch, len(tv.txns), hv.term.Batch, cutSettling(tv), len(hv.closed))
	}
}

// voidInDoubt: the terminal has a void of the purchase id whose outcome is not known yet.
func (pc *cutChecker) voidInDoubt(tv cutTermView, id string) bool {
	for _, t := range tv.txns {
		if t.Op == payment.OpVoid && t.Orig != nil && t.Orig.ID == id && cutDoubtful(t.State) {
			return true
		}
	}
	return false
}

func (pc *cutChecker) describeBatch(b int, tv cutTermView, hv cutHostView) string {
	var keys []cutRef
	for k, e := range hv.entries {
		if e.Batch == b {
			keys = append(keys, k)
		}
	}
	for k := range pc.seen {
		if _, ok := hv.entries[k]; k.batch == b && !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b cutRef) int { return a.stan - b.stan })
	var out []string
	for _, k := range keys {
		line := "    "
		if e, ok := hv.entries[k]; ok {
			line += cutFmtHost(e)
		} else {
			line += fmt.Sprintf("host:     nothing for %v", k)
		}
		if t, ok := tv.txns[k]; ok {
			line += "\n      " + cutFmtTerm(t)
		} else if s, ok := pc.seen[k]; ok {
			line += "\n      " + cutFmtTerm(s.last) + " (last seen)"
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func cutSettling(tv cutTermView) string {
	s := tv.meta.Settle
	switch {
	case s == nil:
		return "no"
	case s.UploadDone:
		return fmt.Sprintf("batch %d, upload done", s.Batch)
	case s.Upload:
		return fmt.Sprintf("batch %d, %d uploaded", s.Batch, len(s.Uploaded))
	case s.Answered:
		return fmt.Sprintf("batch %d, answered", s.Batch)
	}
	return fmt.Sprintf("batch %d, totals sent", s.Batch)
}

func cutHostState(e hostsim.Entry, ok bool) string {
	if !ok {
		return "not at all"
	}
	return e.State
}

func cutSameTotals(a payment.SettlementTotals, b iso8583.Totals) bool {
	return a.DomDebitCount == b.DomDebitCount && a.DomDebit == b.DomDebit && a.DomCreditCount == b.DomCreditCount &&
		a.DomCredit == b.DomCredit && a.ForDebitCount == b.ForDebitCount && a.ForDebit == b.ForDebit &&
		a.ForCreditCount == b.ForCreditCount && a.ForCredit == b.ForCredit
}

func cutFmtTotals(t payment.SettlementTotals) string {
	return fmt.Sprintf("dom debit %d/%d credit %d/%d, for debit %d/%d credit %d/%d",
		t.DomDebitCount, t.DomDebit, t.DomCreditCount, t.DomCredit, t.ForDebitCount, t.ForDebit, t.ForCreditCount, t.ForCredit)
}
