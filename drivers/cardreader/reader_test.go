package cardreader_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/cardemu"
	"github.com/posagent/posagent/board/sim/pty"
	"github.com/posagent/posagent/drivers/cardreader"
	"github.com/posagent/posagent/drivers/emv"
	"github.com/posagent/posagent/drivers/serial"
	"github.com/posagent/posagent/internal/syncio"
)

// Link timings for tests: short, so that every fault ends well inside a second.
var testOptions = cardreader.Options{
	AckTimeout:      80 * time.Millisecond,
	ResponseTimeout: 400 * time.Millisecond,
	CardTimeout:     800 * time.Millisecond,
	FrameTimeout:    40 * time.Millisecond,
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type rig struct {
	line *pty.Line
	emu  *cardemu.Emulator
	r    *cardreader.Reader
}

// newRig puts the emulator on a pseudo-terminal and the driver on the device end, opened with
// serial.Open as the agent opens hardware, and enables all interfaces.
func newRig(t testing.TB, opt cardreader.Options) *rig {
	t.Helper()
	line, err := pty.Open(t.TempDir(), "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = line.Close() })
	emu := cardemu.Start(line, nil, cardemu.Options{Logger: quiet, Seed: 7})
	t.Cleanup(func() { _ = emu.Close() })
	port, err := serial.Open(serial.Config{Path: line.Path(), Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	if opt.Logger == nil {
		opt.Logger = quiet
	}
	r := cardreader.New(port, opt)
	t.Cleanup(func() { _ = r.Close() })
	if en, err := r.Enable(ctx(t), cardreader.All); err != nil || en != cardreader.All {
		t.Fatalf("Enable = %v, %v", en, err)
	}
	return &rig{line: line, emu: emu, r: r}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func (g *rig) event(t testing.TB, kind cardreader.EventKind) cardreader.Event {
	t.Helper()
	select {
	case ev := <-g.r.Events():
		if ev.Kind != kind {
			t.Fatalf("event %v, want %v", ev.Kind, kind)
		}
		return ev
	case <-time.After(3 * time.Second):
		t.Fatalf("no %v event", kind)
	}
	return cardreader.Event{}
}

var supportedAIDs = [][]byte{
	{0xA0, 0x00, 0x00, 0x03, 0x33},
	{0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10},
	{0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10},
}

func terminal() emv.Terminal {
	return emv.Terminal{
		Amount: 5000, Currency: 156, Country: 156,
		Time:                time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC),
		UnpredictableNumber: [4]byte{1, 2, 3, 4},
		Capabilities:        [3]byte{0xE0, 0xE1, 0xC8},
		TerminalType:        0x22,
		IFDSerial:           "SIM00001",
		SequenceCounter:     7,
		TTQ:                 [4]byte{0x36, 0x00, 0x40, 0x00},
	}
}

func TestInfoAndStatus(t *testing.T) {
	g := newRig(t, testOptions)
	info, err := g.r.Info(ctx(t))
	if err != nil || info.Model != "SIM-CR1" || info.Firmware == "" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	st, err := g.r.Status(ctx(t))
	if err != nil || st.Enabled != cardreader.All || st.Present != 0 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if en, err := g.r.Disable(ctx(t), cardreader.Magstripe); err != nil || en != cardreader.Contact|cardreader.Contactless {
		t.Fatalf("Disable = %v, %v", en, err)
	}
	if err := g.emu.Swipe("visa"); !errors.Is(err, cardemu.ErrDisabled) {
		t.Errorf("swipe with the stripe disabled: %v", err)
	}
	if _, err := g.r.PowerOn(ctx(t), cardreader.Contact); !errors.Is(err, cardreader.ErrNoCard) {
		t.Errorf("PowerOn without a card: %v", err)
	}
}

// Every card with a stripe swipes into the tracks its spec says.
func TestSwipe(t *testing.T) {
	g := newRig(t, testOptions)
	set := g.emu.Cards()
	for _, name := range set.Names() {
		spec, _ := set.Spec(name)
		if err := g.emu.Swipe(name); err != nil {
			t.Fatal(err)
		}
		ev := g.event(t, cardreader.CardSwiped)
		c := ev.Card
		if ev.Err != nil || c == nil {
			t.Fatalf("%s: %v %v", name, c, ev.Err)
		}
		if c.PAN() != spec.PAN || c.Expiry() != spec.Expiry || c.ServiceCode() != spec.ServiceCode ||
			c.Track1.Name() != spec.Holder || c.Track2.Data() != spec.PAN+"="+spec.Expiry+spec.ServiceCode+spec.Discretion {
			t.Errorf("%s: read %v", name, c)
		}
		if c.Track3.Data() != spec.Track3 {
			t.Errorf("%s: track 3 differs", name)
		}
		if chip := spec.ServiceCode[0] == '2'; c.ChipCard() != chip {
			t.Errorf("%s: fallback indication %v", name, c.ChipCard())
		}
	}
}

func TestDamagedSwipe(t *testing.T) {
	g := newRig(t, testOptions)
	t2, _ := cardemu.EncodeTrack(2, "6250947000000014=3006201")
	t2[len(t2)-1] ^= 0x03
	if err := g.emu.SwipeRaw(nil, t2, nil); err != nil {
		t.Fatal(err)
	}
	ev := g.event(t, cardreader.CardSwiped)
	if ev.Card != nil || !errors.Is(ev.Err, cardreader.ErrLRC) {
		t.Errorf("bad LRC swipe: %v %v", ev.Card, ev.Err)
	}
	// The reader keeps working after it.
	if _, err := g.r.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// chipRead inserts (or taps) a card, reads it through EMV and takes it out again.
func chipRead(t testing.TB, g *rig, name string, cl bool) (*emv.Result, error) {
	t.Helper()
	iface := cardreader.Contact
	if cl {
		iface = cardreader.Contactless
		if err := g.emu.Tap(name); err != nil {
			t.Fatal(err)
		}
		if ev := g.event(t, cardreader.CardTapped); len(ev.UID) == 0 || ev.Interface != cardreader.Contactless {
			t.Fatalf("tap event %+v", ev)
		}
	} else {
		if err := g.emu.Insert(name); err != nil {
			t.Fatal(err)
		}
		g.event(t, cardreader.CardInserted)
	}
	defer func() {
		_ = g.r.PowerOff(ctx(t), iface)
		g.emu.Remove()
		if ev := g.event(t, cardreader.CardRemoved); ev.Interface != iface {
			t.Errorf("removed from %v", ev.Interface)
		}
	}()
	atr, err := g.r.PowerOn(ctx(t), iface)
	if err != nil {
		return nil, err
	}
	if len(atr) < 2 || atr[0] != 0x3B {
		t.Errorf("ATR % X", atr)
	}
	return emv.Read(ctx(t), g.r.ICC(iface), emv.Config{Contactless: cl, AIDs: supportedAIDs}, terminal())
}

// Chip insert → EMV read over the serial line → tag 57 and field 55 as the card's data and
// the emulator's cryptogram say.
func TestChipRead(t *testing.T) {
	g := newRig(t, testOptions)
	spec, _ := g.emu.Cards().Spec("unionpay-debit")
	res, err := chipRead(t, g, "unionpay-debit", false)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Card
	if c.Track2.Data() != spec.PAN+"=3112220"+spec.Discretion {
		t.Errorf("tag 57 gives %v", c.Track2)
	}
	if seq, _ := c.PANSequence(); seq != "01" {
		t.Errorf("5F34 = %q", seq)
	}
	cdol1, _ := hex.DecodeString("000000005000" + "000000000000" + "0156" + "0000000000" + "0156" + "260701" + "00" + "01020304" + "090000" + strings.Repeat("00", 20))
	key, _ := hex.DecodeString(spec.Key)
	arqc, _ := cardemu.ARQC(key, cdol1, res.ATC)
	f55, err := emv.Parse(res.Field55)
	if err != nil {
		t.Fatal(err)
	}
	got := map[emv.Tag]string{}
	for _, o := range f55 {
		got[o.Tag] = hex.EncodeToString(o.Value)
	}
	for tag, want := range map[emv.Tag]string{
		0x9F26: hex.EncodeToString(arqc), 0x9F27: "80", 0x9F36: fmt.Sprintf("%04x", res.ATC), 0x9F37: "01020304",
		0x95: "0000000000", 0x9A: "260701", 0x9C: "00", 0x9F02: "000000005000", 0x5F2A: "0156", 0x82: "7c00",
		0x9F1A: "0156", 0x84: "a000000333010101", 0x5F34: "01", 0x9F41: "00000007",
	} {
		if got[tag] != want {
			t.Errorf("field 55 %s = %s, want %s", tag, got[tag], want)
		}
	}
	if len(f55) != 20 { // 9F09 is absent: the terminal gave no version
		t.Errorf("field 55 has %d objects", len(f55))
	}
}

// Contactless tap → PPSE → the same data.
func TestContactlessRead(t *testing.T) {
	g := newRig(t, testOptions)
	for _, name := range []string{"unionpay-debit", "visa", "mastercard"} {
		spec, _ := g.emu.Cards().Spec(name)
		res, err := chipRead(t, g, name, true)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Card.Track2.PAN() != spec.PAN || !res.Card.Contactless || res.CryptogramType() != "ARQC" {
			t.Errorf("%s: %v %s", name, res.Card, res.CryptogramType())
		}
	}
}

func TestErrorCards(t *testing.T) {
	g := newRig(t, testOptions)
	for _, cl := range []bool{false, true} {
		_, err := chipRead(t, g, "aid-not-found", cl)
		if !errors.Is(err, emv.ErrNoApplication) || !errors.Is(err, emv.ErrFileNotFound) {
			t.Errorf("aid-not-found (contactless %v): %v", cl, err)
		}
	}
	res, err := chipRead(t, g, "expired", false)
	if err != nil || !res.Card.Expired() {
		t.Errorf("expired: %v %v", res, err)
	}
	if _, err := chipRead(t, g, "magstripe-only", false); !errors.Is(err, cardreader.ErrCardMute) {
		t.Errorf("magstripe card inserted: %v", err)
	}
	if _, err := g.r.Transmit(ctx(t), cardreader.Contact, []byte{0, 0xA4, 4, 0}); !errors.Is(err, cardreader.ErrNoCard) {
		t.Errorf("APDU without card: %v", err)
	}
	if err := g.emu.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.r.Transmit(ctx(t), cardreader.Contact, []byte{0, 0xA4, 4, 0}); !errors.Is(err, cardreader.ErrNotPowered) {
		t.Errorf("APDU without power: %v", err)
	}
}

// Each fault switch: a transient fault is absorbed by the retransmissions; a lasting one
// gives its typed error within the timeouts; and once it is off the reader works again.
func TestFaults(t *testing.T) {
	g := newRig(t, testOptions)
	worst := time.Duration(testOptions.Retries+4)*testOptions.AckTimeout + testOptions.ResponseTimeout + 200*time.Millisecond
	for _, tc := range []struct {
		name   string
		faults cardemu.Faults
		want   error // nil: absorbed
	}{
		{"noise", cardemu.Faults{Noise: true}, nil},
		{"truncated once", cardemu.Faults{Truncate: true, Limit: 1}, nil},
		{"corrupted twice", cardemu.Faults{Corrupt: true, Limit: 2}, nil},
		{"bad checksum once", cardemu.Faults{BadChecksum: true, Limit: 1}, nil},
		{"slow but in time", cardemu.Faults{Delay: 100 * time.Millisecond}, nil},
		{"truncated", cardemu.Faults{Truncate: true}, cardreader.ErrChecksum},
		{"corrupted", cardemu.Faults{Corrupt: true}, cardreader.ErrChecksum},
		{"bad checksum", cardemu.Faults{BadChecksum: true}, cardreader.ErrChecksum},
		{"NAK storm", cardemu.Faults{NAKStorm: true}, cardreader.ErrNAK},
		{"silence", cardemu.Faults{Silence: true}, cardreader.ErrTimeout},
		{"too slow", cardemu.Faults{Delay: 2 * testOptions.ResponseTimeout}, cardreader.ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.emu.SetFaults(tc.faults)
			start := time.Now()
			st, err := g.r.Status(ctx(t))
			took := time.Since(start)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("not absorbed: %v", err)
			case tc.want == nil && st.Enabled != cardreader.All:
				t.Fatalf("status %+v", st)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if took > worst {
				t.Errorf("took %v, bound %v", took, worst)
			}
			if errors.Is(tc.want, cardreader.ErrTimeout) && !errors.Is(err, serial.ErrTimeout) {
				t.Errorf("%v does not match serial.ErrTimeout", err)
			}
			g.emu.SetFaults(cardemu.Faults{})
			if _, err := g.r.Status(ctx(t)); err != nil {
				t.Fatalf("no recovery: %v", err)
			}
		})
	}
	s := g.r.Stats()
	if s.Retransmissions == 0 || s.BadFrames == 0 || s.NAKs == 0 || s.GarbageBytes == 0 || s.Timeouts == 0 {
		t.Errorf("stats %+v", s)
	}
}

// A whole chip read through a noisy line, with a few corrupted frames on the way.
func TestChipReadThroughNoise(t *testing.T) {
	g := newRig(t, testOptions)
	g.emu.SetFaults(cardemu.Faults{Noise: true, Corrupt: true, Limit: 3})
	res, err := chipRead(t, g, "mastercard", false)
	if err != nil || len(res.Cryptogram) != 8 {
		t.Fatalf("%v %v", res, err)
	}
	if s := g.r.Stats(); s.BadFrames < 3 || s.GarbageBytes == 0 {
		t.Errorf("stats %+v", s)
	}
}

// A retransmitted APDU is answered again, not carried out twice: the card's counter moves
// once per read however the line behaves.
func TestRetransmissionDoesNotRepeatCommands(t *testing.T) {
	g := newRig(t, testOptions)
	if err := g.emu.Insert("visa"); err != nil {
		t.Fatal(err)
	}
	g.event(t, cardreader.CardInserted)
	if _, err := g.r.PowerOn(ctx(t), cardreader.Contact); err != nil {
		t.Fatal(err)
	}
	served := g.emu.Served()
	g.emu.SetFaults(cardemu.Faults{BadChecksum: true, Limit: 2})
	resp, err := g.r.Transmit(ctx(t), cardreader.Contact, []byte{0x80, 0xCA, 0x9F, 0x36, 0x00})
	if err != nil || !bytes.HasSuffix(resp, []byte{0x90, 0x00}) {
		t.Fatalf("%X %v", resp, err)
	}
	if n := g.emu.Served() - served; n != 1 {
		t.Errorf("the reader carried the request out %d times", n)
	}
}

// Unplug: requests fail with an error wrapping serial.ErrGone within the timeouts, Err says
// so; after the replug, a reconnecting port brings the same Reader back.
func TestUnplugReplug(t *testing.T) {
	line, err := pty.Open(t.TempDir(), "cardreader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = line.Close() })
	emu := cardemu.Start(line, nil, cardemu.Options{Logger: quiet})
	t.Cleanup(func() { _ = emu.Close() })
	port, err := serial.Reopen(ctx(t), serial.Config{Path: line.Path(), Baud: 115200},
		serial.ReopenOptions{Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	opt := testOptions
	opt.Logger = quiet
	r := cardreader.New(port, opt)
	t.Cleanup(func() { _ = r.Close() })
	if _, err := r.Status(ctx(t)); err != nil {
		t.Fatal(err)
	}

	emu.Unplug()
	deadline := time.Now().Add(3 * time.Second)
	for {
		start := time.Now()
		_, err := r.Status(ctx(t))
		if took := time.Since(start); took > time.Second {
			t.Errorf("a request to an unplugged reader took %v", took)
		}
		if serial.IsGone(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unplugged reader: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !serial.IsGone(r.Err()) {
		t.Errorf("Err() = %v", r.Err())
	}

	if err := emu.Replug(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Status(ctx(t)); err == nil {
			break
		}
		if time.Now().After(deadline.Add(3 * time.Second)) {
			t.Fatalf("not back after replug: %v", r.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Err() != nil {
		t.Errorf("Err() after replug = %v", r.Err())
	}
}

func TestCancelAndClose(t *testing.T) {
	g := newRig(t, testOptions)
	g.emu.SetFaults(cardemu.Faults{Delay: 300 * time.Millisecond})
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.r.Status(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled: %v", err)
	}
	g.emu.SetFaults(cardemu.Faults{})
	// The late answer to the cancelled request is not taken for the next one's.
	if _, err := g.r.Info(ctx(t)); err != nil {
		t.Errorf("after a cancelled request: %v", err)
	}
	_ = g.r.Close()
	if _, err := g.r.Status(ctx(t)); !errors.Is(err, cardreader.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if _, ok := <-g.r.Events(); ok {
		t.Error("events channel open after Close")
	}
}

// Logging a card read — the driver's own logs at debug level and everything a careless
// caller might log — never shows the full PAN, track data or tag 57/5A values.
func TestNoCardDataInLogs(t *testing.T) {
	var buf syncio.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opt := testOptions
	opt.Logger = log
	g := newRig(t, opt)
	spec, _ := g.emu.Cards().Spec("unionpay-debit")

	if err := g.emu.Swipe("unionpay-debit"); err != nil {
		t.Fatal(err)
	}
	ev := g.event(t, cardreader.CardSwiped)
	res, err := chipRead(t, g, "unionpay-debit", false)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("swiped", "event", ev, "card", ev.Card, "track2", ev.Card.Track2, "track1", ev.Card.Track1, "track3", ev.Card.Track3)
	log.Info("chip read", "result", res, "card", res.Card, "data", res.Card.Data, "track2", res.Card.Track2)
	log.Info("printed", "text", fmt.Sprintf("%v %+v %#v %v %+v %v", ev.Card, ev.Card, res.Card, res.Card.Data, *res.Card, res.Card.Track2))
	// Errors are logged too: a bad read's error must not carry data either.
	t2, _ := cardemu.EncodeTrack(2, spec.PAN+"=3112220")
	t2[len(t2)-1] ^= 0x03
	_ = g.emu.SwipeRaw(nil, t2, nil)
	bad := g.event(t, cardreader.CardSwiped)
	log.Info("bad swipe", "err", bad.Err)

	out := buf.String()
	tag57 := strings.ToUpper(hex.EncodeToString(res.Card.Data[emv.TagTrack2Equivalent]))
	tag5A := strings.ToUpper(hex.EncodeToString(res.Card.Data[emv.TagPAN]))
	for what, secret := range map[string]string{
		"PAN": spec.PAN, "track 2": ev.Card.Track2.Data(), "track 3": spec.Track3[:30],
		"discretionary data": "=3112220" + spec.Discretion, "tag 57": tag57, "tag 5A": tag5A,
		"tag 57 lower": strings.ToLower(tag57), "holder": spec.Holder,
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows the %s", what)
		}
	}
	if !strings.Contains(out, emv.MaskPAN(spec.PAN)) {
		t.Errorf("the masked PAN is not in the log:\n%s", out)
	}
}

// One EMV chip read (contact, T=0 card: about 20 APDUs) over the pseudo-terminal, from POWER
// ON to GENERATE AC and POWER OFF.
func BenchmarkEMVChipRead(b *testing.B) {
	g := newRig(b, testOptions)
	if err := g.emu.Insert("unionpay-debit"); err != nil {
		b.Fatal(err)
	}
	g.event(b, cardreader.CardInserted)
	c := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := g.r.PowerOn(c, cardreader.Contact); err != nil {
			b.Fatal(err)
		}
		if _, err := emv.Read(c, g.r.ICC(cardreader.Contact), emv.Config{AIDs: supportedAIDs}, terminal()); err != nil {
			b.Fatal(err)
		}
		if err := g.r.PowerOff(c, cardreader.Contact); err != nil {
			b.Fatal(err)
		}
	}
}
