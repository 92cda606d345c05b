package cardemu

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/posagent/posagent/drivers/emv"
)

// CardSpec is one test card as the cards file describes it. Hex fields are strings of hex
// digits; tags of Extra are hex too ("9F4D": "0B0A").
type CardSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	PAN         string `json:"pan"`
	Expiry      string `json:"expiry"`              // YYMM
	Effective   string `json:"effective,omitempty"` // YYMM
	ServiceCode string `json:"service_code"`
	Holder      string `json:"holder"`                  // track 1 and 5F20, e.g. "ZHANG/SAN"
	Discretion  string `json:"discretionary,omitempty"` // track 2 discretionary digits
	Track3      string `json:"track3,omitempty"`        // track 3 characters, when the stripe has one
	// Interfaces the card has: "magstripe", "contact", "contactless".
	Interfaces  []string `json:"interfaces"`
	PANSequence string   `json:"pan_sequence,omitempty"` // two digits, 5F34
	IssuerCtry  string   `json:"issuer_country,omitempty"`
	ATR         string   `json:"atr,omitempty"`
	UID         string   `json:"uid,omitempty"`
	// Key is the card's 16-byte test key for the fake cryptogram (see ARQC).
	Key string `json:"key,omitempty"`
	ATC uint16 `json:"atc,omitempty"` // the counter's value before the first transaction
	// T0 makes the contact interface behave like a T=0 card: case 4 answers come as 61xx
	// (fetch with GET RESPONSE) and a wrong Le gets 6Cxx.
	T0 bool `json:"t0,omitempty"`
	// SelectSW, when set, is the status word every SELECT gets (e.g. "6A82").
	SelectSW string `json:"select_sw,omitempty"`
	// ResponseFormat of GET PROCESSING OPTIONS (contact) and GENERATE AC: 1 (tag 80) or 2
	// (tag 77, the default).
	ResponseFormat int `json:"response_format,omitempty"`
	// OmitATC leaves the ATC out of a contactless GPO answer, so the terminal must GET DATA.
	OmitATC bool      `json:"omit_atc,omitempty"`
	Apps    []AppSpec `json:"apps,omitempty"`
}

// AppSpec is one payment application on the chip.
type AppSpec struct {
	AID        string            `json:"aid"`
	Label      string            `json:"label"`
	Priority   int               `json:"priority,omitempty"`
	AIP        string            `json:"aip,omitempty"`         // default 1C00 (contact), 0000 … per interface
	PDOL       string            `json:"pdol,omitempty"`        // contact PDOL; empty: none
	CLPDOL     string            `json:"cl_pdol,omitempty"`     // contactless PDOL
	CDOL1      string            `json:"cdol1,omitempty"`       // default: amounts, country, TVR, currency, date, type, UN
	CDOL2      string            `json:"cdol2,omitempty"`       //
	IAD        string            `json:"iad,omitempty"`         // issuer application data 9F10
	AppVersion string            `json:"app_version,omitempty"` // 9F08
	Currency   string            `json:"currency,omitempty"`    // 9F42, e.g. "0156"
	Extra      map[string]string `json:"extra,omitempty"`       // further record tags
}

// CardSet is a named collection of test cards.
type CardSet struct {
	cards map[string]*card
	names []string
}

// card is a parsed CardSpec with what the emulator computes from it.
type card struct {
	spec      CardSpec
	magstripe bool
	contact   bool
	cl        bool
	key       []byte
	atr, uid  []byte
	selectSW  uint16
	apps      []app
	track1    string // characters between the sentinels
	track2    string
	atc       *counter
}

type app struct {
	aid, label      []byte
	priority        byte
	aip             []byte
	pdol, clPDOL    []byte
	cdol1           []byte
	iad             []byte
	records         map[int][]byte // SFI<<8 | record → record body (template 70)
	afl             []byte
	pdolLen, clLen  int
	cdol1Len        int
	track2Bytes     []byte
	panSeq          []byte
	appVersion      []byte
	currency        []byte
	issuerCountry   []byte
	expiry, effDate []byte
}

//go:embed testdata/cards.json
var defaultCards []byte

// Default is the embedded set of test cards (testdata/cards.json): UnionPay debit and credit,
// a Visa and a Mastercard test PAN, an expired card, a magstripe-only card and a chip card
// whose application is not found.
func Default() *CardSet {
	s, err := ParseCards(defaultCards)
	if err != nil {
		panic("cardemu: embedded cards: " + err.Error())
	}
	return s
}

// LoadCards reads a cards file.
func LoadCards(path string) (*CardSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCards(b)
}

// ParseCards parses a cards file: {"cards": [CardSpec…]}.
func ParseCards(b []byte) (*CardSet, error) {
	var doc struct {
		Cards []CardSpec `json:"cards"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("cardemu: cards: %w", err)
	}
	s := &CardSet{cards: map[string]*card{}}
	for _, sp := range doc.Cards {
		c, err := newCard(sp)
		if err != nil {
			return nil, fmt.Errorf("cardemu: card %q: %w", sp.Name, err)
		}
		if s.cards[sp.Name] != nil {
			return nil, fmt.Errorf("cardemu: card %q twice", sp.Name)
		}
		s.cards[sp.Name] = c
		s.names = append(s.names, sp.Name)
	}
	return s, nil
}

// Names lists the cards in file order.
func (s *CardSet) Names() []string { return slices.Clone(s.names) }

// Spec returns a card's description.
func (s *CardSet) Spec(name string) (CardSpec, bool) {
	c, ok := s.cards[name]
	if !ok {
		return CardSpec{}, false
	}
	return c.spec, true
}

func (s *CardSet) card(name string) (*card, error) {
	c, ok := s.cards[name]
	if !ok {
		return nil, fmt.Errorf("cardemu: no card %q", name)
	}
	return c, nil
}

func unhex(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return b, nil
}

// Defaults of the chip data, typical of the schemes' test cards.
const (
	defaultCDOL1  = "9F02069F03069F1A0295055F2A029A039C019F3704"
	defaultCDOL2  = "8A029F02069F03069F1A0295055F2A029A039C019F3704"
	defaultCLPDOL = "9F66049F02069F03069F1A0295055F2A029A039C019F3704"
	defaultAIP    = "1C00"
	defaultATR    = "3B6800000073C84013009000"
	defaultCLATR  = "3B8880010000000000718100F9"
)

func newCard(sp CardSpec) (*card, error) {
	if sp.Name == "" {
		return nil, fmt.Errorf("no name")
	}
	c := &card{spec: sp, atc: &counter{atc: sp.ATC}}
	for _, i := range sp.Interfaces {
		switch i {
		case "magstripe":
			c.magstripe = true
		case "contact":
			c.contact = true
		case "contactless":
			c.cl = true
		default:
			return nil, fmt.Errorf("unknown interface %q", i)
		}
	}
	t2, err := emv.ParseTrack2(sp.PAN + "=" + sp.Expiry + sp.ServiceCode + sp.Discretion)
	if err != nil {
		return nil, err
	}
	c.track2 = t2.Data()
	if sp.Effective != "" {
		if _, err := emv.ParseTrack2(sp.PAN + "=" + sp.Effective + "000"); err != nil {
			return nil, fmt.Errorf("effective date: %w", err)
		}
	}
	if len(sp.Holder) < 2 || len(sp.Holder) > 26 {
		return nil, fmt.Errorf("holder name of %d characters, want 2 to 26", len(sp.Holder))
	}
	c.track1 = "B" + sp.PAN + "^" + sp.Holder + "^" + sp.Expiry + sp.ServiceCode + sp.Discretion
	if c.magstripe {
		// The stripe's capacity (ISO/IEC 7811), sentinels and LRC included.
		if t1, err := EncodeTrack(1, c.track1); err != nil || len(t1) > 79 {
			return nil, fmt.Errorf("track 1 does not fit the stripe: %v", err)
		}
		if t3, err := EncodeTrack(3, sp.Track3); sp.Track3 != "" && (err != nil || len(t3) > 107) {
			return nil, fmt.Errorf("track 3 does not fit the stripe: %v", err)
		}
	}
	if c.key, err = unhex("key", sp.Key); err != nil {
		return nil, err
	}
	if len(c.key) == 0 {
		sum := sha256.Sum256([]byte("cardemu test key " + sp.Name))
		c.key = sum[:16]
	}
	if len(c.key) != 16 {
		return nil, fmt.Errorf("key: %d bytes, want 16", len(c.key))
	}
	if c.atr, err = unhex("atr", or(sp.ATR, defaultATR)); err != nil {
		return nil, err
	}
	if c.uid, err = unhex("uid", or(sp.UID, "04A1B2C3D4E5F6")); err != nil {
		return nil, err
	}
	if sp.SelectSW != "" {
		sw, err := unhex("select_sw", sp.SelectSW)
		if err != nil || len(sw) != 2 {
			return nil, fmt.Errorf("select_sw: want 4 hex digits")
		}
		c.selectSW = uint16(sw[0])<<8 | uint16(sw[1])
	}
	if (c.contact || c.cl) && len(sp.Apps) == 0 {
		return nil, fmt.Errorf("chip card without applications")
	}
	for _, as := range sp.Apps {
		a, err := newApp(c, as, t2)
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", as.AID, err)
		}
		c.apps = append(c.apps, a)
	}
	return c, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func newApp(c *card, as AppSpec, t2 emv.Track2) (app, error) {
	sp := c.spec
	a := app{label: []byte(as.Label), priority: byte(as.Priority), records: map[int][]byte{}}
	var err error
	field := func(dst *[]byte, name, v string) {
		if err == nil {
			*dst, err = unhex(name, v)
		}
	}
	field(&a.aid, "aid", as.AID)
	field(&a.aip, "aip", or(as.AIP, defaultAIP))
	field(&a.pdol, "pdol", as.PDOL)
	field(&a.clPDOL, "cl_pdol", or(as.CLPDOL, defaultCLPDOL))
	field(&a.cdol1, "cdol1", or(as.CDOL1, defaultCDOL1))
	field(&a.iad, "iad", or(as.IAD, "07010103A00000"))
	field(&a.appVersion, "app_version", or(as.AppVersion, "0030"))
	field(&a.currency, "currency", or(as.Currency, "0156"))
	field(&a.issuerCountry, "issuer_country", or(sp.IssuerCtry, "0156"))
	var cdol2 []byte
	field(&cdol2, "cdol2", or(as.CDOL2, defaultCDOL2))
	if sp.PANSequence != "" {
		field(&a.panSeq, "pan_sequence", sp.PANSequence)
	}
	if err != nil {
		return app{}, err
	}
	if len(a.aid) < 5 || len(a.aid) > 16 || len(a.aip) != 2 {
		return app{}, fmt.Errorf("AID or AIP malformed")
	}
	for _, d := range []struct {
		b []byte
		n *int
	}{{a.pdol, &a.pdolLen}, {a.clPDOL, &a.clLen}, {a.cdol1, &a.cdol1Len}} {
		dol, err := emv.ParseDOL(d.b)
		if err != nil {
			return app{}, err
		}
		*d.n = emv.DOLLen(dol)
	}
	a.track2Bytes = t2.BCD()
	a.expiry = yymmLastDay(sp.Expiry)
	if sp.Effective != "" {
		a.effDate = yymmFirstDay(sp.Effective)
	}

	// SFI 1: track data; SFI 2: the application's data and risk management objects.
	rec := func(sfi, n int, objs ...emv.TLV) {
		var body []byte
		for _, o := range objs {
			if o.Value != nil {
				body = emv.AppendTLV(body, o.Tag, o.Value)
			}
		}
		a.records[sfi<<8|n] = emv.AppendTLV(nil, emv.TagRecord, body)
	}
	pan := emvPAN(sp.PAN)
	sc, _ := hex.DecodeString("0" + sp.ServiceCode)
	rec(1, 1,
		emv.TLV{Tag: emv.TagTrack2Equivalent, Value: a.track2Bytes},
		emv.TLV{Tag: emv.TagCardholderName, Value: []byte(sp.Holder)},
		emv.TLV{Tag: emv.TagTrack1Discretionary, Value: nonEmpty(sp.Discretion)},
	)
	rec(2, 1,
		emv.TLV{Tag: emv.TagPAN, Value: pan},
		emv.TLV{Tag: emv.TagExpiry, Value: a.expiry},
		emv.TLV{Tag: emv.TagEffective, Value: a.effDate},
		emv.TLV{Tag: 0x5F28, Value: a.issuerCountry},
		emv.TLV{Tag: emv.TagPANSequence, Value: a.panSeq},
		emv.TLV{Tag: emv.TagServiceCode, Value: sc},
		emv.TLV{Tag: 0x9F07, Value: []byte{0xFF, 0x00}},
		emv.TLV{Tag: 0x9F08, Value: a.appVersion},
		emv.TLV{Tag: 0x9F42, Value: a.currency},
	)
	extra := []emv.TLV{
		{Tag: emv.TagCDOL1, Value: a.cdol1},
		{Tag: 0x8D, Value: cdol2},
		{Tag: 0x8E, Value: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x42, 0x03, 0x1E, 0x03, 0x1F, 0x03}},
		{Tag: 0x9F0D, Value: []byte{0xD8, 0x40, 0x00, 0xA8, 0x00}},
		{Tag: 0x9F0E, Value: []byte{0x00, 0x10, 0x00, 0x00, 0x00}},
		{Tag: 0x9F0F, Value: []byte{0xD8, 0x40, 0x04, 0xF8, 0x00}},
	}
	keys := make([]string, 0, len(as.Extra))
	for k := range as.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		tb, err := unhex("extra tag", k)
		if err != nil || len(tb) == 0 || len(tb) > 3 {
			return app{}, fmt.Errorf("extra tag %q", k)
		}
		v, err := unhex("extra "+k, as.Extra[k])
		if err != nil {
			return app{}, err
		}
		var t emv.Tag
		for _, x := range tb {
			t = t<<8 | emv.Tag(x)
		}
		extra = append(extra, emv.TLV{Tag: t, Value: v})
	}
	rec(2, 2, extra...)
	a.afl = []byte{1 << 3, 1, 1, 0, 2 << 3, 1, 2, 1}
	return a, nil
}

func nonEmpty(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// emvPAN codes a PAN as tag 5A (cn): digits, padded with F.
func emvPAN(pan string) []byte {
	if len(pan)%2 == 1 {
		pan += "F"
	}
	b, _ := hex.DecodeString(pan)
	return b
}

func yymmLastDay(yymm string) []byte {
	days := [...]string{"31", "28", "31", "30", "31", "30", "31", "31", "30", "31", "30", "31"}
	m := int(yymm[2]-'0')*10 + int(yymm[3]-'0')
	b, _ := hex.DecodeString(yymm + days[m-1])
	return b
}

func yymmFirstDay(yymm string) []byte {
	b, _ := hex.DecodeString(yymm + "01")
	return b
}
