package pinpad_test

import (
	"bytes"
	"context"
	"crypto/des"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/drivers/serial"
)

// Test keys (made up for these tests; the transport key is the emulator's default, the
// widely published test key 0123456789ABCDEF FEDCBA9876543210).
var (
	transportKey = pinpademu.DefaultTransportKey
	kekClear     = unhex("89ABCDEF0123456776543210FEDCBA98")
	pikClear     = unhex("F1E2D3C4B5A69788796A5B4C3D2E1F00")
	pik2Clear    = unhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
	makClear     = unhex("1C1C1C1C2A2A2A2A3B3B3B3B4D4D4D4D")
)

const (
	kekSlot = 1
	pikSlot = 2
	makSlot = 3
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func tdesKey(k []byte) []byte {
	switch len(k) {
	case 8:
		return bytes.Repeat(k, 3)
	case 16:
		return append(append([]byte(nil), k...), k[:8]...)
	}
	return k
}

// wrap encrypts key under parent with TDES-ECB, as a key loading host does.
func wrap(parent, key []byte) []byte {
	b, err := des.NewTripleDESCipher(tdesKey(parent))
	if err != nil {
		panic(err)
	}
	out := make([]byte, len(key))
	for i := 0; i < len(key); i += 8 {
		b.Encrypt(out[i:i+8], key[i:i+8])
	}
	return out
}

func unwrapBlock(key []byte, blk pinpad.PINBlock) []byte {
	b, err := des.NewTripleDESCipher(tdesKey(key))
	if err != nil {
		panic(err)
	}
	out := make([]byte, 8)
	b.Decrypt(out, blk[:])
	return out
}

func kcvOf(key []byte) []byte {
	b, _ := des.NewTripleDESCipher(tdesKey(key))
	out := make([]byte, 8)
	b.Encrypt(out, out)
	return out[:3]
}

type rig struct {
	emu    *pinpademu.Emulator
	client *pinpad.Client
	port   serial.Port
}

// fast are client options for tests: short enough that fault tests take well under a second.
var fast = pinpad.Options{AckTimeout: 80 * time.Millisecond, ResponseTimeout: 600 * time.Millisecond}

func newRig(t testing.TB, eo pinpademu.Options, co pinpad.Options) *rig {
	t.Helper()
	eo.Dir = t.TempDir()
	if eo.AckTimeout == 0 {
		eo.AckTimeout = co.AckTimeout
	}
	emu, err := pinpademu.New(eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	r := &rig{emu: emu}
	r.connect(t, co)
	return r
}

// connect opens the pad's device path as the agent opens hardware.
func (r *rig) connect(t testing.TB, co pinpad.Options) {
	t.Helper()
	p, err := serial.Open(serial.Config{Path: r.emu.Path(), Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	r.port = p
	r.client = pinpad.New(p, co)
	c := r.client
	t.Cleanup(func() { _ = c.Close() })
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// loadKeys opens the session and loads a KEK under the transport key, a PIK and a MAK under it.
func (r *rig) loadKeys(t testing.TB) {
	t.Helper()
	ctx := ctxT(t)
	if err := r.client.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []pinpad.KeyLoad{
		{Slot: kekSlot, Usage: pinpad.UsageKEK, Parent: pinpad.TransportSlot, Encrypted: wrap(transportKey, kekClear), CheckValue: kcvOf(kekClear)},
		{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: kekSlot, Encrypted: wrap(kekClear, pikClear), CheckValue: kcvOf(pikClear)},
		{Slot: makSlot, Usage: pinpad.UsageMAK, Parent: kekSlot, Encrypted: wrap(kekClear, makClear), CheckValue: kcvOf(makClear)},
	} {
		if _, err := r.client.LoadKey(ctx, k); err != nil {
			t.Fatalf("%v: %v", k, err)
		}
	}
}

func TestEveryCommand(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{Serial: "PP123", Firmware: "2.1.0", Model: "EMU-9"}, pinpad.Options{})
	c, ctx := r.client, ctxT(t)

	// INFO works without a session; a fresh pad holds only its transport key.
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Serial != "PP123" || in.Firmware != "2.1.0" || in.Model != "EMU-9" ||
		len(in.Slots) != 1 || in.Slots[0] != (pinpad.SlotInfo{Slot: 0, Usage: pinpad.UsageTransport, KeyLen: 16}) {
		t.Fatalf("info %+v", in)
	}
	if err := c.Display(ctx, "a", "b"); !errors.Is(err, pinpad.ErrNotOpen) {
		t.Fatalf("DISPLAY without a session: %v", err)
	}
	var se *pinpad.StatusError
	if err := c.Beep(ctx, 50*time.Millisecond, 1); !errors.As(err, &se) || se.Status != pinpad.StatusNotOpen {
		t.Fatalf("BEEP without a session: %v", err)
	}

	r.loadKeys(t)

	if err := c.Display(ctx, "Сумма: 1 500,00 ₸", "请输入密码"); err != nil {
		t.Fatal(err)
	}
	if l1, l2 := r.emu.Display(); l1 != "Сумма: 1 500,00 ₸" || l2 != "请输入密码" {
		t.Fatalf("display shows %q / %q", l1, l2)
	}
	if err := c.Display(ctx, "this line is far too long for the pad", ""); !errors.Is(err, pinpad.ErrBadParameter) {
		t.Fatalf("long line: %v", err)
	}
	if err := c.Beep(ctx, 20*time.Millisecond, 2); err != nil {
		t.Fatal(err)
	}
	if n := r.emu.Beeps(); n != 2 {
		t.Fatalf("%d beeps", n)
	}

	for slot, want := range map[int]struct {
		usage pinpad.Usage
		key   []byte
	}{0: {pinpad.UsageTransport, transportKey}, kekSlot: {pinpad.UsageKEK, kekClear}, pikSlot: {pinpad.UsagePIK, pikClear}, makSlot: {pinpad.UsageMAK, makClear}} {
		u, kcv, err := c.KeyCheckValue(ctx, slot)
		if err != nil || u != want.usage || !bytes.Equal(kcv[:], kcvOf(want.key)) {
			t.Fatalf("slot %d: %s %s %v", slot, u, kcv, err)
		}
	}
	in, err = c.Info(ctx)
	if err != nil || len(in.Slots) != 4 {
		t.Fatalf("info after loading: %+v %v", in, err)
	}

	// GET PIN: the PIN block decrypts under the PIK to the published format 0 blocks.
	// Thales payShield host command reference, PIN block format 01 (= ISO 9564-1 format 0):
	// PIN 92389, account 4000 0012 3456 2 (check digit 2) → 0592 789F FFED CBA9.
	// EFTlab BP-Tools "PIN blocks" example (reproduced in ID TECH's knowledge base):
	// PAN 43219876543210987, PIN 1234 → 0412AC89ABCDEF67.
	for _, v := range []struct{ pan, pin, block string }{
		{"4000001234562", "92389", "0592789FFFEDCBA9"},
		{"43219876543210987", "1234", "0412AC89ABCDEF67"},
	} {
		if err := r.emu.ScriptPIN(v.pin); err != nil {
			t.Fatal(err)
		}
		blk, err := c.GetPIN(ctx, pinpad.PINRequest{PAN: v.pan, Slot: pikSlot, Timeout: 5 * time.Second, Prompt: "PIN:"})
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(unwrapBlock(pikClear, blk)); got != hex.EncodeToString(unhex(v.block)) {
			t.Fatalf("PAN %s: clear block %s, want %s", pinpad.MaskPAN(v.pan), got, v.block)
		}
	}

	if err := c.Erase(ctx, pinpad.EraseLoaded); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.KeyCheckValue(ctx, pikSlot); !errors.Is(err, pinpad.ErrNoKey) {
		t.Fatalf("KCV after ERASE: %v", err)
	}
	if _, _, err := c.KeyCheckValue(ctx, 0); err != nil {
		t.Fatalf("transport key after ERASE of loaded keys: %v", err)
	}
	if err := c.Erase(ctx, pinpad.EraseAll); err != nil {
		t.Fatal(err)
	}
	if in, err := c.Info(ctx); err != nil || len(in.Slots) != 0 {
		t.Fatalf("info after ERASE all: %+v %v", in, err)
	}

	if err := c.CloseSession(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Display(ctx, "x", ""); !errors.Is(err, pinpad.ErrNotOpen) {
		t.Fatalf("DISPLAY after CLOSE: %v", err)
	}
	if st := c.State(); st != pinpad.StateReady {
		t.Fatalf("state %s", st)
	}
}

func TestKeyLoadingRefusals(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	r.loadKeys(t)
	c, ctx := r.client, ctxT(t)
	before := kcvOf(pikClear)

	cases := []struct {
		name string
		k    pinpad.KeyLoad
		want error
	}{
		{"wrong check value", pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: kekSlot, Encrypted: wrap(kekClear, pik2Clear), CheckValue: kcvOf(pikClear)}, pinpad.ErrKCVMismatch},
		{"wrong KEK", pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: kekSlot, Encrypted: wrap(makClear, pik2Clear), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrKCVMismatch},
		{"working key under the transport key", pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: 0, Encrypted: wrap(transportKey, pik2Clear), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrWrongUsage},
		{"working key under a PIK", pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: makSlot, Encrypted: wrap(makClear, pik2Clear), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrWrongUsage},
		{"KEK under a KEK", pinpad.KeyLoad{Slot: 4, Usage: pinpad.UsageKEK, Parent: kekSlot, Encrypted: wrap(kekClear, pik2Clear), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrWrongUsage},
		{"empty parent", pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: 9, Encrypted: wrap(kekClear, pik2Clear), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrNoKey},
		{"transport slot", pinpad.KeyLoad{Slot: 0, Usage: pinpad.UsageKEK, Parent: 0, Encrypted: wrap(transportKey, pik2Clear), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrBadParameter},
		{"odd length", pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: kekSlot, Encrypted: make([]byte, 12), CheckValue: kcvOf(pik2Clear)}, pinpad.ErrBadParameter},
	}
	for _, tc := range cases {
		if _, err := c.LoadKey(ctx, tc.k); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if _, kcv, err := c.KeyCheckValue(ctx, pikSlot); err != nil || !bytes.Equal(kcv[:], before) {
			t.Fatalf("%s: PIK changed: %s %v", tc.name, kcv, err)
		}
	}

	// The old PIK still encrypts PIN blocks.
	_ = r.emu.ScriptPIN("1234")
	blk, err := c.GetPIN(ctx, pinpad.PINRequest{PAN: "43219876543210987", Slot: pikSlot, Timeout: 5 * time.Second})
	if err != nil || hex.EncodeToString(unwrapBlock(pikClear, blk)) != "0412ac89abcdef67" {
		t.Fatalf("GET PIN after refusals: %v", err)
	}

	// A UnionPay-style 4-byte check value and a single-length key are accepted.
	full := wrap(kekClear, unhex("0123456789ABCDEF"))
	cv := func() []byte {
		b, _ := des.NewCipher(unhex("0123456789ABCDEF"))
		out := make([]byte, 8)
		b.Encrypt(out, out)
		return out[:4]
	}()
	kcv, err := c.LoadKey(ctx, pinpad.KeyLoad{Slot: 5, Usage: pinpad.UsageMAK, Parent: kekSlot, Encrypted: full, CheckValue: cv})
	if err != nil || !bytes.Equal(kcv[:], cv[:3]) {
		t.Fatalf("single-length MAK with 4-byte check value: %s %v", kcv, err)
	}
}

func TestPINEntryOutcomes(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	r.loadKeys(t)
	c, ctx := r.client, ctxT(t)
	req := pinpad.PINRequest{PAN: "4000001234562", Slot: pikSlot, Timeout: 5 * time.Second}

	for _, tc := range []struct {
		step   string
		bypass bool
		want   error
	}{
		{"cancel", false, pinpad.ErrCancelled},
		{"timeout", false, pinpad.ErrEntryTimeout},
		{"bypass", false, pinpad.ErrBypassNotAllowed},
		{"bypass", true, pinpad.ErrBypassed},
	} {
		if err := r.emu.ScriptPIN(tc.step); err != nil {
			t.Fatal(err)
		}
		rq := req
		rq.AllowBypass = tc.bypass
		if _, err := c.GetPIN(ctx, rq); !errors.Is(err, tc.want) {
			t.Errorf("%s (bypass %t): %v, want %v", tc.step, tc.bypass, err, tc.want)
		}
	}

	// The cancel key during entry, and a delay before the PIN.
	go func() {
		// Press only once the pad prompts, or the key would be an event instead.
		for l1, _ := r.emu.Display(); l1 != "ENTER PIN"; l1, _ = r.emu.Display() {
			time.Sleep(5 * time.Millisecond)
		}
		r.emu.Press(pinpademu.KeyCancel)
	}()
	if _, err := c.GetPIN(ctx, req); !errors.Is(err, pinpad.ErrCancelled) {
		t.Errorf("cancel key: %v", err)
	}
	_ = r.emu.ScriptPIN("wait 100ms", "92389")
	if _, err := c.GetPIN(ctx, req); err != nil {
		t.Errorf("delayed PIN: %v", err)
	}

	// A real entry timeout: nothing scripted, one second.
	start := time.Now()
	rq := req
	rq.Timeout = time.Second
	if _, err := c.GetPIN(ctx, rq); !errors.Is(err, pinpad.ErrEntryTimeout) {
		t.Errorf("empty script: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("entry timeout after %s", d)
	}

	for _, tc := range []struct {
		name string
		rq   pinpad.PINRequest
		want error
	}{
		{"MAK slot", pinpad.PINRequest{PAN: req.PAN, Slot: makSlot}, pinpad.ErrWrongUsage},
		{"empty slot", pinpad.PINRequest{PAN: req.PAN, Slot: 7}, pinpad.ErrNoKey},
		{"short PAN", pinpad.PINRequest{PAN: "400000123456", Slot: pikSlot}, pinpad.ErrBadParameter},
		{"length", pinpad.PINRequest{PAN: req.PAN, Slot: pikSlot, MinLen: 3}, pinpad.ErrBadParameter},
	} {
		if _, err := c.GetPIN(ctx, tc.rq); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if r.emu.ScriptLen() != 0 {
		t.Errorf("%d script steps left", r.emu.ScriptLen())
	}
}

func TestAbortPendingGetPIN(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	r.loadKeys(t)
	c, ctx := r.client, ctxT(t)
	req := pinpad.PINRequest{PAN: "4000001234562", Slot: pikSlot, Timeout: 60 * time.Second}

	errc := make(chan error, 1)
	go func() { _, err := c.GetPIN(ctx, req); errc <- err }()
	waitState(t, c, pinpad.StatePINEntry)
	time.Sleep(50 * time.Millisecond)
	if err := c.Abort(ctx); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if err := <-errc; !errors.Is(err, pinpad.ErrAborted) {
		t.Fatalf("GET PIN after abort: %v", err)
	}

	// The caller's context ending aborts the entry on the pad too: the pad is free again.
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.GetPIN(short, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GET PIN with an ending context: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("context end seen after %s", d)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Fatalf("INFO after the aborted entry: %v", err)
	}
	_ = r.emu.ScriptPIN("1234")
	if _, err := c.GetPIN(ctx, req); err != nil {
		t.Fatalf("GET PIN after the aborted entry: %v", err)
	}

	// With nothing pending the pad answers EOT.
	if err := c.Abort(ctx); err != nil {
		t.Fatalf("idle abort: %v", err)
	}
	if n := r.emu.Counters().Aborts; n < 3 {
		t.Fatalf("pad saw %d aborts", n)
	}
}

func waitState(t *testing.T, c *pinpad.Client, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %s, want %s", c.State(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	c, ctx := r.client, ctxT(t)
	r.emu.Press(pinpademu.KeyConfirm) // closed pad: no event
	if err := c.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	r.emu.Press(pinpademu.KeyConfirm)
	r.emu.Press(pinpademu.KeyCancel)
	for _, want := range []pinpad.Event{{Kind: pinpad.EventKey, Key: pinpad.KeyConfirm}, {Kind: pinpad.EventKey, Key: pinpad.KeyCancel}} {
		select {
		case ev := <-c.Events():
			if ev != want {
				t.Fatalf("event %v, want %v", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v event", want)
		}
	}
	r.emu.Tamper()
	select {
	case ev := <-c.Events():
		if ev.Kind != pinpad.EventTamper {
			t.Fatalf("event %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no tamper event")
	}
	if in, err := c.Info(ctx); err != nil || len(in.Slots) != 0 {
		t.Fatalf("keys after tamper: %+v %v", in, err)
	}
}

func TestConcurrentCallsAreSerialised(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, pinpad.Options{})
	r.loadKeys(t)
	ctx := ctxT(t)
	errc := make(chan error, 40)
	for i := range 40 {
		go func() {
			if i%2 == 0 {
				_, err := r.client.Info(ctx)
				errc <- err
				return
			}
			_, _, err := r.client.KeyCheckValue(ctx, pikSlot)
			errc <- err
		}()
	}
	for range 40 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestUnplugAndReplug(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, fast)
	r.loadKeys(t)
	c, ctx := r.client, ctxT(t)

	errc := make(chan error, 1)
	go func() {
		_, err := c.GetPIN(ctx, pinpad.PINRequest{PAN: "4000001234562", Slot: pikSlot, Timeout: 60 * time.Second})
		errc <- err
	}()
	waitState(t, c, pinpad.StatePINEntry)
	start := time.Now()
	r.emu.Unplug()
	select {
	case err := <-errc:
		if !errors.Is(err, serial.ErrGone) {
			t.Fatalf("pending GET PIN after unplug: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GET PIN still pending after unplug")
	}
	t.Logf("unplug seen after %s", time.Since(start))
	if st := c.State(); st != pinpad.StateGone {
		t.Fatalf("state %s", st)
	}
	if _, err := c.Info(ctx); !errors.Is(err, serial.ErrGone) {
		t.Fatalf("INFO while unplugged: %v", err)
	}

	// Back under the same path: a fresh port finds the pad with its keys, session closed.
	if err := r.emu.Replug(); err != nil {
		t.Fatal(err)
	}
	r.connect(t, fast)
	if _, _, err := r.client.KeyCheckValue(ctx, pikSlot); !errors.Is(err, pinpad.ErrNotOpen) {
		t.Fatalf("after replug, before OPEN: %v", err)
	}
	if err := r.client.OpenSession(ctx); err != nil {
		t.Fatal(err)
	}
	if _, kcv, err := r.client.KeyCheckValue(ctx, pikSlot); err != nil || !bytes.Equal(kcv[:], kcvOf(pikClear)) {
		t.Fatalf("PIK after replug: %s %v", kcv, err)
	}
}

// A reconnecting port (serial.Reopen) keeps the same client working across an unplug, and the
// client opens the pad's lost session again by itself.
func TestSameClientSurvivesReplugOnReopeningPort(t *testing.T) {
	t.Parallel()
	emu, err := pinpademu.New(pinpademu.Options{Dir: t.TempDir(), AckTimeout: fast.AckTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	port, err := serial.Reopen(t.Context(), serial.Config{Path: emu.Path(), Baud: 115200},
		serial.ReopenOptions{Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{emu: emu, port: port, client: pinpad.New(port, fast)}
	t.Cleanup(func() { _ = r.client.Close() })
	r.loadKeys(t)
	c, ctx := r.client, ctxT(t)

	r.emu.Unplug()
	if _, err := c.Info(ctx); !errors.Is(err, serial.ErrGone) {
		t.Fatalf("INFO while unplugged: %v", err)
	}
	if err := r.emu.Replug(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.Display(ctx, "back", "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DISPLAY after replug: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l1, _ := r.emu.Display(); l1 != "back" {
		t.Fatalf("display %q", l1)
	}
	if _, kcv, err := c.KeyCheckValue(ctx, pikSlot); err != nil || !bytes.Equal(kcv[:], kcvOf(pikClear)) {
		t.Fatalf("PIK after replug: %s %v", kcv, err)
	}
}
