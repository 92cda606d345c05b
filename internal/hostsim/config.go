// Package hostsim is the acquirer host simulator: a TCP server speaking the UnionPay
// direct-connect POS profile of ISO 8583 (../../docs/hostsim.md), with a ledger of every
// financial effect that tests can query, fault switches (no answer, late answer, bad MAC,
// half a frame, garbage), and the QR payment host of the demo. The logic lives here so that
// tests import it; cmd/hostsim is a thin binary around it.
//
// It is a simulator: working keys are generated and kept in clear, the PIN of a card is in
// its configuration. Never point a real terminal with production keys at it.
package hostsim

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Key layouts of the sign-in answer (field 62), keystore.SignInKeys.
const (
	LayoutSingle    = "single"     // 60.3 = 001: PIK(8) CV MAK(8) CV, 24 bytes
	LayoutDouble    = "double"     // 60.3 = 003: PIK(16) CV MAK(8)+8 zero CV, 40 bytes
	LayoutDoubleTDK = "double+tdk" // 60.3 = 004: as double + TDK(16) CV, 60 bytes
)

// Config is the simulator's configuration: a JSON file for the binary, a struct for tests.
type Config struct {
	// Listen is the ISO 8583 TCP address ("127.0.0.1:0" picks a free port).
	Listen string `json:"listen"`
	// QRListen and ControlListen are the HTTP addresses of the QR host and of the control
	// API (binary only; tests use QRHandler and ControlHandler). They may be the same.
	QRListen      string `json:"qrListen,omitempty"`
	ControlListen string `json:"controlListen,omitempty"`
	// TLSCert and TLSKey (PEM files) make the ISO 8583 listener TLS.
	TLSCert string `json:"tlsCert,omitempty"`
	TLSKey  string `json:"tlsKey,omitempty"`
	// Snapshot is a JSON file the state (ledger, keys, batches, balances, QR orders) is
	// written to after every change and read back at start. Empty: memory only.
	Snapshot string `json:"snapshot,omitempty"`

	Terminals []Terminal `json:"terminals"`
	Accounts  []Account  `json:"accounts"`
	Rules     Rules      `json:"rules"`
	QR        QRConfig   `json:"qr"`

	// IdleTimeout closes a connection that sends nothing for that long (default 2 min).
	IdleTimeout Duration `json:"idleTimeout,omitempty"`

	Logger *slog.Logger     `json:"-"` // default: discard
	Now    func() time.Time `json:"-"` // default: time.Now
	Rand   io.Reader        `json:"-"` // default: crypto/rand (working keys, RRN, QR ids)
}

// Terminal is a terminal the host knows.
type Terminal struct {
	TID string `json:"tid"` // field 41, 8 characters
	MID string `json:"mid"` // field 42, 15 characters
	// KEK is the terminal master key the TMS loaded into the terminal, hex (8, 16 or 24
	// bytes). The sign-in answer encrypts the working keys under it (TDES-ECB).
	KEK string `json:"kek"`
	// KeyLayout is the layout used when a sign-in's 60.3 is not 001/003/004 (default
	// "double"); a 60.3 of 001, 003 or 004 always wins.
	KeyLayout string `json:"keyLayout,omitempty"`
	// MerchantName is returned by the parameter download (tag 11).
	MerchantName string `json:"merchantName,omitempty"`
	// Params adds or overrides parameter-download items: tag (2 digits) → value.
	Params map[string]string `json:"params,omitempty"`
}

// Account is a card the host's issuer side knows.
type Account struct {
	PAN     string `json:"pan"`
	PIN     string `json:"pin,omitempty"` // checked when field 52 is present
	Expiry  string `json:"expiry"`        // YYMM
	Balance int64  `json:"balance"`       // minor units
	// Limit is this card's per-transaction limit (minor units, 0 = none): above → "61".
	Limit    int64  `json:"limit,omitempty"`
	Domestic bool   `json:"domestic"`
	Org      string `json:"org,omitempty"` // card organisation, field 63: "CUP", "VIS", "MCC", …
}

// Rules are host-wide authorisation rules.
type Rules struct {
	// MaxAmount is the per-transaction amount limit (minor units, 0 = none): above → "61".
	MaxAmount int64 `json:"maxAmount,omitempty"`
	// Declines forces an answer code for a PAN ("05", "41", …) on purchase, balance,
	// pre-authorisation and offline uploads.
	Declines map[string]string `json:"declines,omitempty"`
	// BatchStart is the first batch number of every terminal (default 1).
	BatchStart int `json:"batchStart,omitempty"`
	// Currency is the expected field 49 (default "156"); answers echo the request's.
	Currency string `json:"currency,omitempty"`
}

// QRConfig configures the simulated QR wallet.
type QRConfig struct {
	// PayDelay is when the simulated customer pays (or cancels) after the order is made
	// (default 3 s; negative: never — the order expires). The customer scans the code (status
	// scanned) half-way there.
	PayDelay Duration `json:"payDelay,omitempty"`
	// Expiry is when an unpaid order expires (default 2 min).
	Expiry Duration `json:"expiry,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("3s", "250ms") in JSON;
// a bare number is milliseconds.
type Duration time.Duration

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "3s" or 3000 (milliseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var ms int64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("hostsim: duration: want \"3s\" or milliseconds: %s", b)
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}

// LoadConfig reads a JSON configuration file (unknown fields are errors).
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("hostsim: config %s: %w", path, err)
	}
	return c, nil
}

// DefaultAccounts are the cards of the emulated card reader
// (board/sim/cardemu/testdata/cards.json), every one with PIN 123456.
func DefaultAccounts() []Account {
	return []Account{
		{PAN: "6228480000000012344", PIN: "123456", Expiry: "3112", Balance: 10_000_000, Domestic: true, Org: "CUP"},
		{PAN: "6250947000000014", PIN: "123456", Expiry: "3006", Balance: 50_000_000, Domestic: true, Org: "CUP"},
		{PAN: "4761739001010010", PIN: "123456", Expiry: "2912", Balance: 10_000_000, Domestic: false, Org: "VIS"},
		{PAN: "5413330089020011", PIN: "123456", Expiry: "2812", Balance: 10_000_000, Domestic: false, Org: "MCC"},
		{PAN: "6228480000000056788", PIN: "123456", Expiry: "1912", Balance: 10_000_000, Domestic: true, Org: "CUP"},
		{PAN: "6222021000000005", PIN: "123456", Expiry: "3003", Balance: 100_000, Domestic: true, Org: "CUP"},
		{PAN: "6212340000000001", PIN: "123456", Expiry: "3101", Balance: 10_000_000, Domestic: true, Org: "CUP"},
	}
}

// validate checks the configuration and fills defaults.
func (c *Config) validate() error {
	if c.Rules.BatchStart <= 0 {
		c.Rules.BatchStart = 1
	}
	if c.Rules.BatchStart > 999999 {
		return errors.New("hostsim: rules.batchStart above 999999")
	}
	if c.Rules.Currency == "" {
		c.Rules.Currency = "156"
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = Duration(2 * time.Minute)
	}
	if c.QR.PayDelay == 0 {
		c.QR.PayDelay = Duration(3 * time.Second)
	}
	if c.QR.Expiry <= 0 {
		c.QR.Expiry = Duration(2 * time.Minute)
	}
	seen := map[string]bool{}
	for i := range c.Terminals {
		t := &c.Terminals[i]
		if t.TID == "" || len(t.TID) > 8 {
			return fmt.Errorf("hostsim: terminal %d: tid must be 1..8 characters", i)
		}
		if seen[t.TID] {
			return fmt.Errorf("hostsim: terminal %s configured twice", t.TID)
		}
		seen[t.TID] = true
		k, err := hex.DecodeString(t.KEK)
		if err != nil || (len(k) != 8 && len(k) != 16 && len(k) != 24) {
			return fmt.Errorf("hostsim: terminal %s: kek must be 8, 16 or 24 bytes of hex", t.TID)
		}
		switch t.KeyLayout {
		case "":
			t.KeyLayout = LayoutDouble
		case LayoutSingle, LayoutDouble, LayoutDoubleTDK:
		default:
			return fmt.Errorf("hostsim: terminal %s: keyLayout %q (single, double, double+tdk)", t.TID, t.KeyLayout)
		}
		for tag := range t.Params {
			if len(tag) != 2 || !isDigits(tag) {
				return fmt.Errorf("hostsim: terminal %s: parameter tag %q is not 2 digits", t.TID, tag)
			}
		}
	}
	pans := map[string]bool{}
	for i, a := range c.Accounts {
		if len(a.PAN) < 13 || len(a.PAN) > 19 || !isDigits(a.PAN) {
			return fmt.Errorf("hostsim: account %d: pan must be 13..19 digits", i)
		}
		if pans[a.PAN] {
			return fmt.Errorf("hostsim: account %s configured twice", mask(a.PAN))
		}
		pans[a.PAN] = true
		if len(a.Expiry) != 4 || !isDigits(a.Expiry) {
			return fmt.Errorf("hostsim: account %s: expiry must be YYMM", mask(a.PAN))
		}
		if a.PIN != "" && (len(a.PIN) < 4 || len(a.PIN) > 12 || !isDigits(a.PIN)) {
			return fmt.Errorf("hostsim: account %s: pin must be 4..12 digits", mask(a.PAN))
		}
	}
	for pan, code := range c.Rules.Declines {
		if len(code) != 2 {
			return fmt.Errorf("hostsim: rules.declines[%s]: code must be 2 characters", mask(pan))
		}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// mask is a PAN with all but the first 6 and last 4 digits hidden.
func mask(pan string) string {
	if len(pan) < 11 {
		return strings.Repeat("*", len(pan))
	}
	return pan[:6] + strings.Repeat("*", len(pan)-10) + pan[len(pan)-4:]
}
