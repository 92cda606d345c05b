// Package checkout runs a card operation at the terminal the way a cardholder meets it: the
// amount on the PIN pad, the card read from whichever interface it is presented to (chip,
// contactless, stripe), the PIN entered on the pad — only its encrypted block ever reaches
// the agent — then the payment engine's exchange with the host, and the outcome back on the
// pad. Cash registers (agent/ecr), the diagnostics port and tests drive operations through it.
package checkout

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
	"github.com/posagent/posagent/drivers/cardreader"
	"github.com/posagent/posagent/drivers/emv"
	"github.com/posagent/posagent/drivers/pinpad"
)

// Errors.
var (
	ErrNoReader  = errors.New("checkout: no card reader attached")
	ErrNoPad     = errors.New("checkout: no PIN pad attached")
	ErrNoCard    = errors.New("checkout: no card presented in time")
	ErrCancelled = errors.New("checkout: cancelled by the cardholder")
	ErrCardRead  = errors.New("checkout: the card could not be read")
	ErrUseChip   = errors.New("checkout: chip card swiped: insert it")
	// ErrVetoed: the Sale's Progress callback stopped the operation before the host; the
	// callback's own error is wrapped too.
	ErrVetoed = errors.New("checkout: stopped by the caller")
)

// Stage is how far an operation has come: what a cash register shows as its sub-status.
type Stage int

// Stages, in the order an operation passes them; a stage an operation does not need (the
// PIN of a contactless tap under the CVM limit) is skipped.
const (
	// StageWaitCard: the prompt is on the pad and the reader waits for a card.
	StageWaitCard Stage = iota + 1
	// StageCardRead: a card was read; Progress.CardMask and Entry are set from here on.
	StageCardRead
	// StageWaitPIN: the cardholder is asked for the PIN on the pad.
	StageWaitPIN
	// StageHost: the exchange with the host begins. From here the operation cannot be
	// stopped without a reversal, which is the engine's business.
	StageHost
)

func (s Stage) String() string {
	switch s {
	case StageWaitCard:
		return "waitCard"
	case StageCardRead:
		return "cardRead"
	case StageWaitPIN:
		return "waitPIN"
	case StageHost:
		return "host"
	}
	return "Stage(" + strconv.Itoa(int(s)) + ")"
}

// Progress reports a stage of an operation to the one who asked for it.
type Progress struct {
	Stage Stage
	// CardMask is the card number masked to its first 6 and last 4 digits (from
	// StageCardRead on; empty before, and for operations without a card).
	CardMask string
	// Entry is the PAN entry mode (field 22's first two digits): "05" chip, "07"
	// contactless, "02" stripe. Set with CardMask.
	Entry string
}

// Options configure a Checkout.
type Options struct {
	Engine  *payment.Engine
	Reader  func() *cardreader.Reader
	Pad     func() *pinpad.Client
	PINSlot func() (int, error) // the keystore's working PIK slot
	Config  func() *termconfig.Document
	// CardWait bounds the wait for a card (default 60 s); PINWait the PIN entry (default 30 s).
	CardWait, PINWait time.Duration
	Logger            *slog.Logger
	Now               func() time.Time
}

// Checkout runs operations one at a time (the engine serialises them anyway).
type Checkout struct {
	o   Options
	log *slog.Logger
}

// New makes a Checkout.
func New(o Options) *Checkout {
	if o.CardWait <= 0 {
		o.CardWait = 60 * time.Second
	}
	if o.PINWait <= 0 {
		o.PINWait = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Checkout{o: o, log: o.Logger.With("svc", "checkout")}
}

// Sale asks for one operation at the terminal.
type Sale struct {
	Op       payment.Op
	Amount   int64
	OrigID   string
	Orig     *payment.OrigRef
	Operator string
	ECR      string
	// Approval is the id of a supervisor's approval when the operation needs one (the agent
	// checks it before the checkout runs).
	Approval string
	// NoCard runs an operation on an original without presenting the card (a void when the
	// configuration does not require a swipe).
	NoCard bool
	// Progress, when set, is called synchronously at each stage the operation reaches, on
	// the goroutine running it: it should return quickly. An error returned at
	// StageWaitCard, StageCardRead or StageWaitPIN stops the operation before anything
	// reaches the host (Run returns it wrapped with ErrVetoed) — a cash register refuses a
	// card here, or gives up because the customer paid otherwise. What it returns at
	// StageHost is ignored: the exchange has begun. An operation with NoCard reports
	// StageHost only.
	Progress func(Progress) error
}

// CardData is what "read card data" gives: enough to recognise the card, never its full
// number or track data.
type CardData struct {
	Mask   string // the card number, first 6 and last 4 digits
	Expiry string // YYMM
	Entry  string // "05" chip, "07" contactless, "02" stripe
	// Scheme is the scheme of the configuration's BIN range the card falls in; empty when
	// none does.
	Scheme   string
	AppLabel string // chip and contactless only
	AID      string // chip and contactless only, upper-case hex
}

// needsPIN says whether an operation asks the cardholder's PIN (online PIN, UnionPay
// practice): money out of the account and inquiries do; voids when configured.
func needsPIN(op payment.Op, doc *termconfig.Document) bool {
	switch op {
	case payment.OpPurchase, payment.OpBalance, payment.OpPreAuth:
		return true
	case payment.OpCashWithdrawal:
		return true
	case payment.OpTopUp:
		return false // money onto the card, like a refund
	case payment.OpVoid, payment.OpCompletionVoid, payment.OpPreAuthVoid:
		return doc.HostParameters.PINRequiredForVoid
	}
	return false
}

// askPIN says whether this operation with this card asks the PIN: as needsPIN says, except a
// contactless tap under the CVM limit. Cash is handed over on the approval alone, so a
// withdrawal asks the PIN however the card came (the engine refuses one without it).
func askPIN(op payment.Op, doc *termconfig.Document, entry string, amount int64) bool {
	if !needsPIN(op, doc) {
		return false
	}
	return op == payment.OpCashWithdrawal || entry != "07" || cvmRequired(doc, amount)
}

// Run presents the operation to the cardholder and carries it out. The end of ctx before
// the host exchange stops it there (the error wraps ctx.Err()); the reader is switched off
// and a PIN entry on the pad cancelled.
func (c *Checkout) Run(ctx context.Context, s Sale) (*payment.Txn, error) {
	doc := c.o.Config()
	// A terminal that cannot send the operation does not ask for the card (and the PIN)
	// first; the engine checks again.
	switch c.o.Engine.Status().State {
	case payment.SignedOut:
		return nil, payment.ErrNotSignedIn
	case payment.Locked:
		return nil, payment.ErrLocked
	}
	req := payment.Request{Op: s.Op, Amount: s.Amount, OrigID: s.OrigID, Orig: s.Orig, Operator: s.Operator, ECR: s.ECR}
	pad := c.o.Pad()
	var prog Progress
	fail := func(err error) (*payment.Txn, error) {
		c.show(ctx, pad, "", messageFor(err))
		return nil, err
	}
	if !s.NoCard {
		card, err := c.readCard(ctx, doc, s, amountLine(s.Amount))
		if err != nil {
			return fail(err)
		}
		req.Card = card
		prog = Progress{Stage: StageCardRead, CardMask: payment.MaskPAN(card.PAN), Entry: card.Entry}
		if err := report(s, prog); err != nil {
			return fail(err)
		}
		if askPIN(s.Op, doc, card.Entry, s.Amount) {
			prog.Stage = StageWaitPIN
			if err := report(s, prog); err != nil {
				return fail(err)
			}
			block, err := c.pin(ctx, doc, pad, card.PAN, s.Amount)
			if err != nil {
				return fail(err)
			}
			req.PINBlock = block
		}
	}
	// The last moment the operation can still be dropped without a trace at the host.
	if ctx.Err() != nil {
		return fail(stopped(ctx, "before the host"))
	}
	prog.Stage = StageHost
	_ = report(s, prog)
	c.show(ctx, pad, amountLine(s.Amount), "Processing...")
	t, err := c.o.Engine.Do(ctx, req)
	l1, l2 := amountLine(s.Amount), outcome(t, err)
	if err == nil && t != nil && t.Op == payment.OpBalance {
		// The inquiry's answer is for the cardholder's eyes: the pad shows it.
		if b, ok := balanceLine(t.Balance); ok {
			l1, l2 = "Balance", b
		}
	}
	c.show(ctx, pad, l1, l2)
	return t, err
}

// ReadCard waits for a card and reads it as a sale would (the interfaces the configuration
// allows for s.Amount, the Progress callbacks of StageWaitCard and StageCardRead), then stops:
// no PIN, nothing to the host, no sign-in needed. s.Op and s.Amount shape the chip read
// (EMV 9C and 9F02) as they would for that operation; other fields are not used.
func (c *Checkout) ReadCard(ctx context.Context, s Sale) (CardData, error) {
	doc := c.o.Config()
	pad := c.o.Pad()
	l1 := "Read card"
	if s.Amount > 0 {
		l1 = amountLine(s.Amount)
	}
	card, err := c.readCard(ctx, doc, s, l1)
	if err == nil {
		err = report(s, Progress{Stage: StageCardRead, CardMask: payment.MaskPAN(card.PAN), Entry: card.Entry})
	}
	if err != nil {
		c.show(ctx, pad, "", messageFor(err))
		return CardData{}, err
	}
	d := CardData{Mask: payment.MaskPAN(card.PAN), Expiry: card.Expiry, Entry: card.Entry, AppLabel: card.AppLabel, AID: card.AID}
	if r, ok := doc.LookupBIN(card.PAN); ok {
		d.Scheme = string(r.Scheme)
	}
	c.show(ctx, pad, d.Mask, "Card read")
	return d, nil
}

// report calls the sale's Progress callback; its error is the veto.
func report(s Sale, p Progress) error {
	if s.Progress == nil {
		return nil
	}
	if err := s.Progress(p); err != nil {
		return fmt.Errorf("%w at %s: %w", ErrVetoed, p.Stage, err)
	}
	return nil
}

// stopped is the error of an operation whose ctx ended: ctx.Err() and, when one was given,
// the cause.
func stopped(ctx context.Context, where string) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("checkout: stopped %s: %w: %w", where, err, cause)
	}
	return fmt.Errorf("checkout: stopped %s: %w", where, err)
}

// readCard waits for a card on any interface and reads it; l1 is the first line of the
// prompt on the pad.
func (c *Checkout) readCard(ctx context.Context, doc *termconfig.Document, s Sale, l1 string) (*payment.Card, error) {
	r := c.o.Reader()
	if r == nil {
		return nil, ErrNoReader
	}
	// Events the reader reported before this operation belong to nobody: a card inserted and
	// taken out meanwhile must not be read now. A card still in the slot is asked for below.
	if !drain(r.Events()) {
		return nil, ErrNoReader
	}
	ifaces, prompt := cardreader.All, "Insert/tap/swipe"
	if !contactlessAllowed(doc, s.Amount) {
		ifaces, prompt = cardreader.Contact|cardreader.Magstripe, "Insert/swipe"
	}
	c.show(ctx, c.o.Pad(), l1, prompt)
	if _, err := r.Enable(ctx, ifaces); err != nil {
		return nil, readErr(ctx, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_, _ = r.Disable(dctx, cardreader.All)
		cancel()
	}()
	if err := report(s, Progress{Stage: StageWaitCard}); err != nil {
		return nil, err
	}
	// The cardholder may have inserted the card before the operation began: no event comes
	// for it any more.
	if st, err := r.Status(ctx); err != nil {
		return nil, readErr(ctx, err)
	} else if st.Present&cardreader.Contact != 0 {
		return c.chip(ctx, r, doc, s, cardreader.Contact)
	}
	wait, cancel := context.WithTimeout(ctx, c.o.CardWait)
	defer cancel()
	for {
		select {
		case <-wait.Done():
			if ctx.Err() != nil {
				return nil, stopped(ctx, "waiting for the card")
			}
			return nil, ErrNoCard
		case ev, ok := <-r.Events():
			if !ok {
				return nil, ErrNoReader
			}
			switch ev.Kind {
			case cardreader.CardSwiped:
				if ev.Card == nil || ev.Card.Track2.IsZero() {
					c.show(ctx, c.o.Pad(), "Read error", "Swipe again")
					continue
				}
				t2 := ev.Card.Track2
				if t2.ChipCard() && !fallbackAllowed(doc) {
					return nil, ErrUseChip
				}
				return &payment.Card{PAN: t2.PAN(), Expiry: t2.Expiry(), Track2: t2.Data(), Entry: "02"}, nil
			case cardreader.CardInserted, cardreader.CardTapped:
				if ev.Err != nil || ev.Interface != cardreader.Contact && ev.Interface != cardreader.Contactless {
					continue // a malformed event: the card is not known to be there
				}
				return c.chip(ctx, r, doc, s, ev.Interface)
			}
		}
	}
}

// drain empties the event channel; false when it is closed.
func drain(events <-chan cardreader.Event) bool {
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return false
			}
		default:
			return true
		}
	}
}

// contactlessAllowed: the contactless profile is on and the amount within its limit.
func contactlessAllowed(doc *termconfig.Document, amount int64) bool {
	p := doc.ContactlessProfile
	return p.Enabled && (p.TransactionLimit == 0 || uint64(max(amount, 0)) <= p.TransactionLimit)
}

// fallbackAllowed: a chip card may be swiped only when the configuration lets it fall back
// (paymentParameters.magstripeFallback) and no special rule denies it. A swipe does not say
// which application the chip holds, so any rule denying the fallback counts.
func fallbackAllowed(doc *termconfig.Document) bool {
	if !doc.PaymentParameters.MagstripeFallback {
		return false
	}
	for _, r := range doc.EMVSpecialProcessing {
		if r.DenyFallback {
			return false
		}
	}
	return true
}

// chip reads the card's EMV application to the first GENERATE AC.
func (c *Checkout) chip(ctx context.Context, r *cardreader.Reader, doc *termconfig.Document, s Sale, iface cardreader.Interface) (*payment.Card, error) {
	contactless := iface == cardreader.Contactless
	// Both interfaces need the card powered (contactless: activated) before any APDU.
	if _, err := r.PowerOn(ctx, iface); err != nil {
		return nil, readErr(ctx, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = r.PowerOff(dctx, iface)
		cancel()
	}()
	cfg := emv.Config{Contactless: contactless}
	for _, app := range doc.EMVApplications {
		if contactless && !app.Contactless || !contactless && !app.Contact {
			continue // the application is not offered on this interface
		}
		if aid, err := hex.DecodeString(app.AID); err == nil && len(aid) > 0 {
			cfg.AIDs = append(cfg.AIDs, aid)
		}
	}
	if len(cfg.AIDs) == 0 {
		// emv.Read would take any application the card offers.
		return nil, fmt.Errorf("%w: no application configured for the %s interface", ErrCardRead, iface)
	}
	term := emv.Terminal{Amount: uint64(max(s.Amount, 0)), Currency: numeric(currencyOf(doc)), Country: numeric(doc.CountryCode),
		Type: txType(s.Op), Time: c.o.Now(), TerminalType: 0x22}
	caps := doc.TerminalCapabilities
	hexInto(term.Capabilities[:], caps.Capabilities)
	hexInto(term.AdditionalCapabilities[:], caps.AdditionalCapabilities)
	var tt [1]byte
	if hexInto(tt[:], caps.TerminalType) {
		term.TerminalType = tt[0]
	}
	if contactless {
		hexInto(term.TTQ[:], doc.ContactlessProfile.TTQ)
	}
	res, err := emv.Read(ctx, r.ICC(iface), cfg, term)
	if err != nil {
		return nil, readErr(ctx, err)
	}
	card := &payment.Card{PAN: res.Card.Track2.PAN(), Expiry: res.Card.Track2.Expiry(), Track2: res.Card.Track2.Data(),
		ICC: res.Field55, AID: strings.ToUpper(hex.EncodeToString(res.Card.AID)), AppLabel: res.Card.Label, Entry: "05"}
	if contactless {
		card.Entry = "07"
	}
	if seq, ok := res.Card.PANSequence(); ok {
		card.CardSeq = fmt.Sprintf("%03s", seq)
	}
	return card, nil
}

// readErr is the error of a failed reader or card exchange: the end of ctx when that is why
// it failed, ErrCardRead otherwise.
func readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return stopped(ctx, "reading the card")
	}
	return fmt.Errorf("%w: %w", ErrCardRead, err)
}

// hexInto decodes s into dst when it is exactly len(dst) bytes of hex.
func hexInto(dst []byte, s string) bool {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return false
	}
	copy(dst, b)
	return true
}

// pin asks the cardholder's PIN on the pad and returns its block, encrypted under the PIK.
func (c *Checkout) pin(ctx context.Context, doc *termconfig.Document, pad *pinpad.Client, pan string, amount int64) ([]byte, error) {
	if pad == nil {
		return nil, ErrNoPad
	}
	slot, err := c.o.PINSlot()
	if err != nil {
		return nil, err
	}
	hp := doc.HostParameters
	blk, err := pad.GetPIN(ctx, pinpad.PINRequest{PAN: pan, Slot: slot, MinLen: int(hp.PINLengthMin), MaxLen: int(hp.PINLengthMax),
		Timeout: c.o.PINWait, Prompt: amountLine(amount)})
	switch {
	case ctx.Err() != nil:
		// The pad's client cancels the entry on the pad when ctx ends.
		return nil, stopped(ctx, "at the PIN entry")
	case errors.Is(err, pinpad.ErrCancelled), errors.Is(err, pinpad.ErrEntryTimeout), errors.Is(err, pinpad.ErrAborted):
		return nil, fmt.Errorf("%w: %w", ErrCancelled, err)
	case err != nil:
		return nil, err
	}
	return blk[:], nil
}

func (c *Checkout) show(ctx context.Context, pad *pinpad.Client, l1, l2 string) {
	if pad == nil {
		return
	}
	// The outcome of an operation stopped by its ctx is shown all the same, bounded.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := pad.Display(dctx, l1, l2); err != nil {
		c.log.Debug("pad display", "err", err)
	}
}

func amountLine(amount int64) string {
	return fmt.Sprintf("%d.%02d", amount/100, amount%100)
}

func outcome(t *payment.Txn, err error) string {
	switch {
	case err == nil:
		return "Approved"
	case errors.Is(err, payment.ErrDeclined) && t != nil:
		return "Declined " + t.RespCode
	case errors.Is(err, payment.ErrInDoubt):
		return "No answer"
	}
	return "Not done"
}

// balanceLine is the available balance of a balance inquiry's field 54 (account type 2,
// amount type 2, currency 3, C or D, 12 digits) for the pad.
func balanceLine(f54 string) (string, bool) {
	if len(f54) < 20 || (f54[7] != 'C' && f54[7] != 'D') {
		return "", false
	}
	v, err := strconv.ParseInt(f54[8:20], 10, 64)
	if err != nil {
		return "", false
	}
	sign := ""
	if f54[7] == 'D' {
		sign = "-"
	}
	return sign + amountLine(v), true
}

func messageFor(err error) string {
	switch {
	case errors.Is(err, ErrNoCard):
		return "No card"
	case errors.Is(err, ErrCancelled), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "Cancelled"
	case errors.Is(err, ErrVetoed):
		return "Operation stopped"
	case errors.Is(err, ErrUseChip):
		return "Insert the chip"
	}
	return "Card error"
}

func cvmRequired(doc *termconfig.Document, amount int64) bool {
	limit := doc.ContactlessProfile.CVMRequiredLimit
	return limit == 0 || uint64(max(amount, 0)) > limit
}

func currencyOf(doc *termconfig.Document) string {
	for _, c := range doc.Currencies {
		if c.Default {
			return c.Numeric
		}
	}
	return "156"
}

func numeric(s string) uint16 {
	n, _ := strconv.Atoi(s)
	return uint16(n)
}

// txType is EMV 9C for an operation: the first two digits of its processing code.
func txType(op payment.Op) byte {
	switch op {
	case payment.OpRefund:
		return 0x20
	case payment.OpBalance:
		return 0x31
	case payment.OpPreAuth:
		return 0x03
	case payment.OpCashWithdrawal:
		return 0x01
	case payment.OpTopUp:
		return 0x28
	}
	return 0x00
}
