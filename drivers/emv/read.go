package emv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// Config says which applications the terminal supports and how to look for them.
type Config struct {
	// Contactless selects through the PPSE (2PAY.SYS.DDF01). Otherwise the PSE
	// (1PAY.SYS.DDF01) is read first and, when the card has none, each supported AID is
	// selected in turn.
	Contactless bool
	// AIDs the terminal supports. A card application matches when its AID begins with one of
	// them (partial selection). Empty accepts every application the card offers through its
	// PSE or PPSE.
	AIDs [][]byte
}

// Card is the application read from a card, ready for GENERATE AC.
type Card struct {
	AID    []byte // DF name of the selected application (84)
	Label  string // application label (50)
	Track2 Track2 // from tag 57, or from 5A, 5F24 and 5F30 when a card has no tag 57
	// Data is everything the card said during the read: FCI, GPO answer, records, and after
	// GenerateAC the cryptogram data.
	Data        Data
	Contactless bool

	t    Transport
	term Terminal // the values sent in the PDOL
	pdol []DOLEntry
	// restrictions are the TVR bits the card's dates set (EMV processing restrictions).
	restrictions [5]byte
	// precomputed: a contactless card gave its cryptogram in the GPO answer.
	precomputed bool
}

// Result is the first GENERATE AC's outcome and what the host message needs of it.
type Result struct {
	Card       *Card
	CID        byte   // cryptogram information data (9F27)
	Cryptogram []byte // 9F26, 8 bytes
	ATC        uint16 // 9F36
	// Field55 is the ICC data for ISO 8583 field 55, in the UnionPay order.
	Field55 []byte
}

// Cryptogram types in the top bits of the CID.
const (
	CIDAAC  = 0x00
	CIDTC   = 0x40
	CIDARQC = 0x80
)

// CryptogramType names the cryptogram: "ARQC", "TC" or "AAC".
func (r *Result) CryptogramType() string {
	switch r.CID & 0xC0 {
	case CIDARQC:
		return "ARQC"
	case CIDTC:
		return "TC"
	case CIDAAC:
		return "AAC"
	}
	return "RFU"
}

// Read runs the whole read: application selection, GET PROCESSING OPTIONS, READ RECORD and
// the first GENERATE AC asking for an ARQC. A payment engine that must do something between
// reading the card and the cryptogram (ask for the PIN, set the CVM results) calls
// ReadApplication and Card.GenerateAC itself.
func Read(ctx context.Context, t Transport, cfg Config, term Terminal) (*Result, error) {
	c, err := ReadApplication(ctx, t, cfg, term)
	if err != nil {
		return nil, err
	}
	return c.GenerateAC(ctx, c.Terminal())
}

var (
	pseName  = []byte("1PAY.SYS.DDF01")
	ppseName = []byte("2PAY.SYS.DDF01")
)

type candidate struct {
	aid      []byte
	label    string
	priority int // 1 highest … 15; 0 (none) sorts last
}

// ReadApplication selects the application, gets the processing options and reads the records
// the card lists. term's time and unpredictable number are filled when zero; Card.Terminal
// returns the values used, which GenerateAC must see again.
func ReadApplication(ctx context.Context, t Transport, cfg Config, term Terminal) (*Card, error) {
	term = term.prepared()
	cands, lastErr := candidates(ctx, t, cfg)
	if isTransport(lastErr) {
		return nil, lastErr
	}
	for _, cand := range cands {
		c, err := readApp(ctx, t, cfg, term, cand)
		if err == nil {
			return c, nil
		}
		// A card that refuses this application (not found, blocked, conditions not
		// satisfied) may still take the next one (EMV Book 1, 12.4); anything else ends the read.
		var swe *SWError
		if !errors.As(err, &swe) || !retryable(swe.SW) {
			return nil, err
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoApplication, lastErr)
	}
	return nil, ErrNoApplication
}

func retryable(sw uint16) bool {
	switch sw {
	case 0x6283, 0x6985, 0x6A81, 0x6A82:
		return true
	}
	return false
}

// transportError marks a failure of the reader (or a cancelled context) rather than an answer
// of the card: no point in trying another application.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

func send(ctx context.Context, t Transport, name string, apdu []byte) ([]byte, uint16, error) {
	data, sw, err := exchange(ctx, t, name, apdu)
	if err != nil && !errors.Is(err, ErrBadResponse) {
		err = &transportError{err}
	}
	return data, sw, err
}

func selectName(ctx context.Context, t Transport, name string, df []byte) ([]byte, error) {
	data, sw, err := send(ctx, t, name, command(0x00, 0xA4, 0x04, 0x00, df, true))
	if err != nil {
		return nil, err
	}
	if sw != 0x9000 {
		return nil, &SWError{Cmd: name, SW: sw}
	}
	if v, ok := Find(data, TagFCI); !ok || v == nil {
		return nil, fmt.Errorf("%w: %s: no FCI template", ErrBadResponse, name)
	}
	return data, nil
}

// candidates lists the applications to try, best first. The error is the last refusal seen,
// for the message when nothing is left.
func candidates(ctx context.Context, t Transport, cfg Config) ([]candidate, error) {
	var list []candidate
	var lastErr error
	if cfg.Contactless {
		fci, err := selectName(ctx, t, "SELECT PPSE", ppseName)
		if err != nil {
			return nil, err
		}
		dir, _ := Find(fci, TagFCIIssuerData)
		list = dirEntries(dir, 0)
	} else {
		var err error
		list, err = pseEntries(ctx, t)
		if isTransport(err) {
			return nil, err
		}
		lastErr = err
	}
	list = slices.DeleteFunc(list, func(c candidate) bool { return !supported(cfg, c.aid) })
	if len(list) == 0 && !cfg.Contactless {
		// List of AIDs (EMV Book 1, 12.3.3): select each supported AID by name.
		for _, aid := range cfg.AIDs {
			fci, err := selectName(ctx, t, "SELECT AID", aid)
			if err != nil {
				if isTransport(err) {
					return nil, err
				}
				lastErr = err
				continue
			}
			list = append(list, fciCandidate(fci, aid))
		}
	}
	slices.SortStableFunc(list, func(a, b candidate) int { return rank(a.priority) - rank(b.priority) })
	if len(list) == 0 && lastErr == nil && cfg.Contactless {
		lastErr = fmt.Errorf("%w: PPSE lists no supported application", ErrBadResponse)
	}
	return list, lastErr
}

func rank(p int) int {
	if p == 0 {
		return 16
	}
	return p
}

func supported(cfg Config, aid []byte) bool {
	if len(aid) < 5 || len(aid) > 16 {
		return false
	}
	if len(cfg.AIDs) == 0 {
		return true
	}
	for _, a := range cfg.AIDs {
		if bytes.HasPrefix(aid, a) {
			return true
		}
	}
	return false
}

// maxDirRecords bounds the PSE directory a card may make the terminal read.
const maxDirRecords = 32

func pseEntries(ctx context.Context, t Transport) ([]candidate, error) {
	fci, err := selectName(ctx, t, "SELECT PSE", pseName)
	if err != nil {
		return nil, err
	}
	sfi, ok := Find(fci, TagSFI)
	if !ok || len(sfi) != 1 || sfi[0] == 0 || sfi[0] > 30 {
		return nil, fmt.Errorf("%w: PSE without a directory SFI", ErrBadResponse)
	}
	var list []candidate
	for rec := 1; rec <= maxDirRecords; rec++ {
		data, sw, err := send(ctx, t, "READ RECORD (PSE)", command(0x00, 0xB2, byte(rec), sfi[0]<<3|4, nil, true))
		if err != nil {
			return nil, err
		}
		if sw == 0x6A83 {
			break
		}
		if sw != 0x9000 {
			return nil, &SWError{Cmd: "READ RECORD (PSE)", SW: sw}
		}
		body, ok := Find(data, TagRecord)
		if !ok {
			return nil, fmt.Errorf("%w: PSE record without template 70", ErrBadResponse)
		}
		list = append(list, dirEntries(body, 0)...)
	}
	return list, nil
}

// dirEntries collects the application templates (61) of a directory: PSE records or the
// PPSE's issuer discretionary data.
func dirEntries(b []byte, depth int) []candidate {
	if depth > maxDepth {
		return nil
	}
	objs, err := Parse(b)
	if err != nil {
		return nil
	}
	var out []candidate
	for _, o := range objs {
		switch {
		case o.Tag == TagDirEntry:
			var c candidate
			inner, err := Parse(o.Value)
			if err != nil {
				continue
			}
			for _, e := range inner {
				switch e.Tag {
				case TagAID:
					c.aid = slices.Clone(e.Value)
				case TagAppLabel:
					c.label = printable(e.Value)
				case TagPriority:
					if len(e.Value) == 1 {
						c.priority = int(e.Value[0] & 0x0F)
					}
				}
			}
			if c.aid != nil {
				out = append(out, c)
			}
		case o.Tag.Constructed():
			out = append(out, dirEntries(o.Value, depth+1)...)
		}
	}
	return out
}

func fciCandidate(fci, aid []byte) candidate {
	c := candidate{aid: aid}
	if df, ok := Find(fci, TagDFName); ok && len(df) >= 5 && len(df) <= 16 {
		c.aid = slices.Clone(df)
	}
	if l, ok := Find(fci, TagAppLabel); ok {
		c.label = printable(l)
	}
	if p, ok := Find(fci, TagPriority); ok && len(p) == 1 {
		c.priority = int(p[0] & 0x0F)
	}
	return c
}

func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7F {
			out = append(out, c)
		}
	}
	return string(out)
}

// maxRecords bounds how many records one AFL may make the terminal read.
const maxRecords = 64

func readApp(ctx context.Context, t Transport, cfg Config, term Terminal, cand candidate) (*Card, error) {
	fci, err := selectName(ctx, t, "SELECT AID", cand.aid)
	if err != nil {
		return nil, err
	}
	c := &Card{AID: cand.aid, Label: cand.label, Data: Data{}, Contactless: cfg.Contactless, t: t, term: term}
	if err := c.Data.Collect(fci); err != nil {
		return nil, fmt.Errorf("%w: FCI: %w", ErrBadResponse, err)
	}
	if df, ok := c.Data[TagDFName]; ok && len(df) >= 5 && len(df) <= 16 {
		c.AID = df
	}
	if l, ok := c.Data[TagAppLabel]; ok && c.Label == "" {
		c.Label = printable(l)
	}
	if c.pdol, err = ParseDOL(c.Data[TagPDOL]); err != nil {
		return nil, fmt.Errorf("%w: PDOL: %w", ErrBadResponse, err)
	}
	afl, err := c.getProcessingOptions(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.readRecords(ctx, afl); err != nil {
		return nil, err
	}
	if err := c.track2(); err != nil {
		return nil, err
	}
	c.processingRestrictions()
	_, hasAC := c.Data[TagCryptogram]
	c.precomputed = cfg.Contactless && hasAC
	return c, nil
}

func (c *Card) lookup(term *Terminal) func(Tag) ([]byte, bool) {
	return func(tag Tag) ([]byte, bool) {
		if v, ok := term.Value(tag); ok {
			return v, true
		}
		v, ok := c.Data[tag]
		return v, ok
	}
}

func (c *Card) getProcessingOptions(ctx context.Context) ([]byte, error) {
	pdolData := BuildDOL(c.pdol, c.lookup(&c.term))
	if len(pdolData) > 250 {
		return nil, fmt.Errorf("%w: PDOL asks for %d bytes", ErrBadResponse, len(pdolData))
	}
	data, sw, err := send(ctx, c.t, "GET PROCESSING OPTIONS", command(0x80, 0xA8, 0x00, 0x00, AppendTLV(nil, TagCommandTemplate, pdolData), true))
	if err != nil {
		return nil, err
	}
	if sw != 0x9000 {
		return nil, &SWError{Cmd: "GET PROCESSING OPTIONS", SW: sw}
	}
	objs, err := Parse(data)
	if err != nil || len(objs) == 0 {
		return nil, fmt.Errorf("%w: GET PROCESSING OPTIONS answer not TLV", ErrBadResponse)
	}
	var aip, afl []byte
	switch objs[0].Tag {
	case TagResponseFormat1:
		v := objs[0].Value
		if len(v) < 2 {
			return nil, fmt.Errorf("%w: GET PROCESSING OPTIONS format 1 too short", ErrBadResponse)
		}
		aip, afl = v[:2], v[2:]
		c.Data[TagAIP] = slices.Clone(aip)
		c.Data[TagAFL] = slices.Clone(afl)
	case TagResponseFormat2:
		if err := c.Data.Collect(data); err != nil {
			return nil, fmt.Errorf("%w: GET PROCESSING OPTIONS: %w", ErrBadResponse, err)
		}
		aip, afl = c.Data[TagAIP], c.Data[TagAFL]
	default:
		return nil, fmt.Errorf("%w: GET PROCESSING OPTIONS answer template %s", ErrBadResponse, objs[0].Tag)
	}
	if len(aip) != 2 || len(afl)%4 != 0 {
		return nil, fmt.Errorf("%w: AIP or AFL malformed", ErrBadResponse)
	}
	return afl, nil
}

func (c *Card) readRecords(ctx context.Context, afl []byte) error {
	n := 0
	for i := 0; i+4 <= len(afl); i += 4 {
		sfi, first, last := afl[i]>>3, afl[i+1], afl[i+2]
		if sfi == 0 || sfi > 30 || afl[i]&7 != 0 || first == 0 || last < first {
			return fmt.Errorf("%w: AFL entry %d malformed", ErrBadResponse, i/4)
		}
		for rec := int(first); rec <= int(last); rec++ {
			if n++; n > maxRecords {
				return fmt.Errorf("%w: AFL lists more than %d records", ErrBadResponse, maxRecords)
			}
			data, sw, err := send(ctx, c.t, "READ RECORD", command(0x00, 0xB2, byte(rec), sfi<<3|4, nil, true))
			if err != nil {
				return err
			}
			if sw != 0x9000 {
				return &SWError{Cmd: "READ RECORD", SW: sw}
			}
			objs, err := Parse(data)
			// Records of SFI 1–10 are EMV's own and must be a single template 70.
			if err != nil || sfi <= 10 && (len(objs) != 1 || objs[0].Tag != TagRecord) {
				return fmt.Errorf("%w: record %d of SFI %d is not a template 70", ErrBadResponse, rec, sfi)
			}
			if err := c.Data.Collect(data); err != nil {
				return fmt.Errorf("%w: record %d of SFI %d: %w", ErrBadResponse, rec, sfi, err)
			}
		}
	}
	return nil
}

func (c *Card) track2() error {
	var err error
	if v, ok := c.Data[TagTrack2Equivalent]; ok {
		if c.Track2, err = Track2FromBCD(v); err != nil {
			return fmt.Errorf("%w: tag 57: %w", ErrBadResponse, err)
		}
	} else {
		// Some cards carry no tag 57 over the contact interface: build it from the PAN,
		// expiry and service code, the way field 35 expects it.
		pan, ok1 := c.Data[TagPAN]
		exp, ok2 := c.Data[TagExpiry]
		if !ok1 || !ok2 || len(exp) != 3 {
			return fmt.Errorf("%w: neither tag 57 nor PAN and expiry", ErrBadResponse)
		}
		sc := []byte{0x00, 0x00}
		if v, ok := c.Data[TagServiceCode]; ok && len(v) == 2 {
			sc = v
		}
		s := hexString(pan)
		if i := bytes.IndexByte([]byte(s), 'F'); i >= 0 {
			s = s[:i]
		}
		s += "=" + hexString(exp)[:4] + hexString(sc)[1:]
		if c.Track2, err = ParseTrack2(s); err != nil {
			return fmt.Errorf("%w: PAN and expiry: %w", ErrBadResponse, err)
		}
	}
	if pan, ok := c.Data[TagPAN]; ok {
		s := hexString(pan)
		if i := bytes.IndexByte([]byte(s), 'F'); i >= 0 {
			s = s[:i]
		}
		if s != c.Track2.PAN() {
			return fmt.Errorf("%w: PAN in 5A differs from tag 57", ErrBadResponse)
		}
	}
	return nil
}

func hexString(b []byte) string {
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, hexDigit[c>>4], hexDigit[c&0x0F])
	}
	return string(s)
}

// processingRestrictions sets the TVR bits of the application's dates (EMV Book 3, 10.4).
func (c *Card) processingRestrictions() {
	today, _ := c.term.Value(TagTransactionDate)
	if exp, ok := c.Data[TagExpiry]; ok && len(exp) == 3 && bytes.Compare(yyyy(exp), yyyy(today)) < 0 {
		c.restrictions[1] |= 0x40 // expired application
	}
	if eff, ok := c.Data[TagEffective]; ok && len(eff) == 3 && bytes.Compare(yyyy(eff), yyyy(today)) > 0 {
		c.restrictions[1] |= 0x20 // application not yet effective
	}
}

// yyyy widens a BCD YYMMDD date with its century (EMV: YY < 50 is 20YY) so dates compare.
func yyyy(d []byte) []byte {
	century := byte(0x20)
	if d[0] >= 0x50 {
		century = 0x19
	}
	return []byte{century, d[0], d[1], d[2]}
}

// Terminal is the terminal data of the read with the TVR bits the card's dates set: what
// GenerateAC needs, with the CVM results and further TVR bits changed as the transaction goes.
func (c *Card) Terminal() Terminal {
	t := c.term
	for i := range t.TVR {
		t.TVR[i] |= c.restrictions[i]
	}
	return t
}

// PANSequence is the card sequence number (5F34) as two digits, for field 23.
func (c *Card) PANSequence() (string, bool) {
	v, ok := c.Data[TagPANSequence]
	if !ok || len(v) != 1 {
		return "", false
	}
	return hexString(v), true
}

// Expired reports whether the processing restrictions found the application expired.
func (c *Card) Expired() bool { return c.restrictions[1]&0x40 != 0 }

// GenerateAC asks the card for an ARQC over the CDOL1 data built from term (normally
// Card.Terminal() with the CVM results set) and returns the cryptogram with field 55. A
// contactless card that already gave its cryptogram with the processing options is not asked
// again: its field 55 carries the terminal values the card signed. An AAC comes back as the
// result together with ErrCardDeclined.
func (c *Card) GenerateAC(ctx context.Context, term Terminal) (*Result, error) {
	for i := range term.TVR {
		term.TVR[i] |= c.restrictions[i]
	}
	if c.precomputed {
		term = c.signedTerminal(term)
	} else {
		cdol, err := ParseDOL(c.Data[TagCDOL1])
		if err != nil || len(cdol) == 0 {
			return nil, fmt.Errorf("%w: CDOL1 missing or malformed", ErrBadResponse)
		}
		data := BuildDOL(cdol, c.lookup(&term))
		if len(data) > 250 {
			return nil, fmt.Errorf("%w: CDOL1 asks for %d bytes", ErrBadResponse, len(data))
		}
		resp, sw, err := send(ctx, c.t, "GENERATE AC", command(0x80, 0xAE, CIDARQC, 0x00, data, true))
		if err != nil {
			return nil, err
		}
		if sw != 0x9000 {
			return nil, &SWError{Cmd: "GENERATE AC", SW: sw}
		}
		if err := c.acResponse(resp); err != nil {
			return nil, err
		}
	}
	if _, ok := c.Data[TagATC]; !ok {
		if err := c.getATC(ctx); err != nil {
			return nil, err
		}
	}
	cid, ac, atc := c.Data[TagCID], c.Data[TagCryptogram], c.Data[TagATC]
	if len(cid) != 1 || len(ac) != 8 || len(atc) != 2 {
		return nil, fmt.Errorf("%w: cryptogram, CID or ATC missing", ErrBadResponse)
	}
	r := &Result{Card: c, CID: cid[0], Cryptogram: ac, ATC: uint16(atc[0])<<8 | uint16(atc[1])}
	f55, err := c.field55(&term)
	if err != nil {
		return nil, err
	}
	r.Field55 = f55
	if r.CID&0xC0 == CIDAAC {
		return r, ErrCardDeclined
	}
	return r, nil
}

// signedTerminal keeps the PDOL values the card computed its cryptogram over, and the rest
// (CVM results, TVR when the PDOL did not ask for it) from term.
func (c *Card) signedTerminal(term Terminal) Terminal {
	t := c.Terminal()
	signed := map[Tag]bool{}
	for _, e := range c.pdol {
		signed[e.Tag] = true
	}
	if !signed[TagTVR] {
		t.TVR = term.TVR
	}
	if !signed[TagCVMResults] {
		t.CVMResults = term.CVMResults
	}
	t.IFDSerial, t.AppVersion, t.SequenceCounter = term.IFDSerial, term.AppVersion, term.SequenceCounter
	return t
}

func (c *Card) acResponse(resp []byte) error {
	objs, err := Parse(resp)
	if err != nil || len(objs) == 0 {
		return fmt.Errorf("%w: GENERATE AC answer not TLV", ErrBadResponse)
	}
	switch objs[0].Tag {
	case TagResponseFormat1:
		v := objs[0].Value
		if len(v) < 11 {
			return fmt.Errorf("%w: GENERATE AC format 1 too short", ErrBadResponse)
		}
		c.Data[TagCID] = slices.Clone(v[:1])
		c.Data[TagATC] = slices.Clone(v[1:3])
		c.Data[TagCryptogram] = slices.Clone(v[3:11])
		if len(v) > 11 {
			c.Data[TagIAD] = slices.Clone(v[11:])
		}
	case TagResponseFormat2:
		if err := c.Data.Collect(resp); err != nil {
			return fmt.Errorf("%w: GENERATE AC: %w", ErrBadResponse, err)
		}
	default:
		return fmt.Errorf("%w: GENERATE AC answer template %s", ErrBadResponse, objs[0].Tag)
	}
	return nil
}

func (c *Card) getATC(ctx context.Context) error {
	data, sw, err := send(ctx, c.t, "GET DATA (ATC)", command(0x80, 0xCA, 0x9F, 0x36, nil, true))
	if err != nil {
		return err
	}
	if sw != 0x9000 {
		return &SWError{Cmd: "GET DATA (ATC)", SW: sw}
	}
	v, ok := Find(data, TagATC)
	if !ok || len(v) != 2 {
		return fmt.Errorf("%w: GET DATA answer without ATC", ErrBadResponse)
	}
	c.Data[TagATC] = slices.Clone(v)
	return nil
}

// Field55Tags are the ICC data objects of field 55 in the order the UnionPay profile lists
// them; each is sent when the card or the terminal has it.
var Field55Tags = []Tag{
	TagCryptogram, TagCID, TagIAD, TagUnpredictableNumber, TagATC, TagTVR, TagTransactionDate,
	TagTransactionType, TagAmount, TagCurrency, TagAIP, TagCountry, TagAmountOther,
	TagTerminalCaps, TagCVMResults, TagTerminalType, TagIFDSerial, TagDFName,
	TagAppVersionTerminal, TagSequenceCounter, TagPANSequence,
}

// maxField55 is field 55's limit in the host profile (b..255).
const maxField55 = 255

func (c *Card) field55(term *Terminal) ([]byte, error) {
	var out []byte
	for _, tag := range Field55Tags {
		var v []byte
		var ok bool
		switch tag {
		case TagDFName:
			v, ok = c.AID, len(c.AID) > 0
		case TagCryptogram, TagCID, TagIAD, TagATC, TagAIP, TagPANSequence:
			v, ok = c.Data[tag]
		default:
			v, ok = term.Value(tag)
		}
		if ok {
			out = AppendTLV(out, tag, v)
		}
	}
	if len(out) > maxField55 {
		return nil, fmt.Errorf("%w: field 55 would be %d bytes", ErrBadResponse, len(out))
	}
	return out, nil
}

// String shows what identifies the application, with the PAN masked.
func (c *Card) String() string {
	if c == nil {
		return "emv.Card(nil)"
	}
	return fmt.Sprintf("emv.Card{aid=%X label=%q pan=%s}", c.AID, c.Label, MaskPAN(c.Track2.PAN()))
}

// LogValue implements slog.LogValuer.
func (c *Card) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("aid", fmt.Sprintf("%X", c.AID)),
		slog.String("label", c.Label),
		slog.String("pan", MaskPAN(c.Track2.PAN())),
		slog.Bool("contactless", c.Contactless),
	)
}

// LogValue implements slog.LogValuer: the cryptogram type, ATC and the card, masked.
func (r *Result) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("cryptogram", r.CryptogramType()),
		slog.Int("atc", int(r.ATC)),
		slog.Any("card", r.Card),
	)
}
