package pinpad_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/internal/syncio"
)

var (
	pik3Clear = unhex("3A4B5C6D7E8F9A0B1C2D3E4F5A6B7C8D")
	pik4Clear = unhex("D8C7B6A5F4E3D2C1B0A9F8E7D6C5B4A3")
)

// Faults the protocol recovers from: the command succeeds, after retransmissions.
func TestFaultsRecovered(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		faults pinpademu.Faults
		check  func(t *testing.T, r *rig)
	}{
		{"noise", pinpademu.Faults{Noise: 48}, func(t *testing.T, r *rig) {
			if r.client.Stats().GarbageBytes == 0 {
				t.Error("no garbage skipped")
			}
		}},
		{"truncated frames", pinpademu.Faults{Truncate: 2}, func(t *testing.T, r *rig) {
			if r.emu.Counters().Retransmissions < 2 {
				t.Errorf("pad retransmitted %d times", r.emu.Counters().Retransmissions)
			}
		}},
		{"corrupted frames", pinpademu.Faults{Corrupt: 2}, func(t *testing.T, r *rig) {
			if r.client.Stats().NAKsSent < 2 {
				t.Errorf("client sent %d NAKs", r.client.Stats().NAKsSent)
			}
		}},
		{"wrong checksums", pinpademu.Faults{BadCRC: 3}, func(t *testing.T, r *rig) {
			if r.client.Stats().BadFrames < 3 {
				t.Errorf("client saw %d bad frames", r.client.Stats().BadFrames)
			}
		}},
		{"NAK storm within the retry limit", pinpademu.Faults{NAKStorm: 3}, func(t *testing.T, r *rig) {
			if s := r.client.Stats(); s.Retransmissions < 3 || s.NAKsReceived < 3 {
				t.Errorf("stats %+v", s)
			}
		}},
		{"slow answers within the limit", pinpademu.Faults{Slow: 250 * time.Millisecond}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, pinpademu.Options{}, fast)
			r.loadKeys(t)
			ctx := ctxT(t)
			r.emu.SetFaults(tc.faults)
			if _, kcv, err := r.client.KeyCheckValue(ctx, pikSlot); err != nil || !bytes.Equal(kcv[:], kcvOf(pikClear)) {
				t.Fatalf("KCV: %s %v", kcv, err)
			}
			_ = r.emu.ScriptPIN("1234")
			blk, err := r.client.GetPIN(ctx, pinpad.PINRequest{PAN: "43219876543210987", Slot: pikSlot, Timeout: 5 * time.Second})
			if err != nil || hex.EncodeToString(unwrapBlock(pikClear, blk)) != "0412ac89abcdef67" {
				t.Fatalf("GET PIN: %v", err)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// Faults beyond recovery: a typed error within the protocol's time limits, and the next
// command, with the fault gone, works.
func TestFaultsFailTypedThenResync(t *testing.T) {
	t.Parallel()
	// (Retries+1) ACK timeouts, or the ACK then the answer timeout, plus slack for a busy host.
	bound := 4*fast.AckTimeout + fast.ResponseTimeout + time.Second
	cases := []struct {
		name   string
		faults pinpademu.Faults
		want   []error
	}{
		{"silence", pinpademu.Faults{Silent: true}, []error{pinpad.ErrTimeout}},
		{"NAK storm", pinpademu.Faults{NAKStorm: -1}, []error{pinpad.ErrNAK}},
		{"wrong checksums", pinpademu.Faults{BadCRC: -1}, []error{pinpad.ErrTimeout, pinpad.ErrChecksum}},
		{"corrupted frames", pinpademu.Faults{Corrupt: -1}, []error{pinpad.ErrTimeout, pinpad.ErrChecksum}},
		{"truncated frames", pinpademu.Faults{Truncate: -1}, []error{pinpad.ErrTimeout}},
		{"too slow", pinpademu.Faults{Slow: 900 * time.Millisecond}, []error{pinpad.ErrTimeout}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, pinpademu.Options{}, fast)
			r.loadKeys(t)
			ctx := ctxT(t)
			r.emu.SetFaults(tc.faults)
			start := time.Now()
			_, _, err := r.client.KeyCheckValue(ctx, pikSlot)
			took := time.Since(start)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v is not %v", err, w)
				}
			}
			if took > bound {
				t.Errorf("error after %s, bound %s", took, bound)
			}
			if st := r.client.State(); st != pinpad.StateNoAnswer {
				t.Errorf("state %s", st)
			}
			r.emu.SetFaults(pinpademu.Faults{})
			// A late answer to the failed command may still arrive: it must not be taken for
			// the answer to the next one.
			time.Sleep(100 * time.Millisecond)
			for range 3 {
				in, err := r.client.Info(ctx)
				if err != nil || in.Serial == "" {
					t.Fatalf("INFO after the fault: %+v %v", in, err)
				}
				if _, kcv, err := r.client.KeyCheckValue(ctx, pikSlot); err != nil || !bytes.Equal(kcv[:], kcvOf(pikClear)) {
					t.Fatalf("KCV after the fault: %s %v", kcv, err)
				}
			}
			if st := r.client.State(); st != pinpad.StateReady {
				t.Errorf("state %s", st)
			}
		})
	}
}

// Garbage from the host's side: the pad resynchronises as well.
func TestPadResynchronisesAfterHostGarbage(t *testing.T) {
	t.Parallel()
	r := newRig(t, pinpademu.Options{}, fast)
	ctx := ctxT(t)
	rng := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 300)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	// A frame cut short, then noise: the port is the client's, but a write is a write.
	junk = append([]byte{0x02, 0x41, 0x00, 0x05, 0x03 ^ 0x20}, junk...)
	if _, err := r.port.Write(junk); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Info(ctx); err != nil {
		t.Fatal(err)
	}
}

// Secrets stay out of logs, errors and printed values, faults or not.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	t.Parallel()
	var out syncio.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	co := fast
	co.Logger = log
	r := newRig(t, pinpademu.Options{Logger: log}, co)
	r.emu.SetFaults(pinpademu.Faults{Corrupt: 2, NAKStorm: 2, Noise: 8})
	r.loadKeys(t)
	ctx := ctxT(t)
	const pan, pin = "43219876543210987", "739146"
	var printed []string
	_ = r.emu.ScriptPIN(pin)
	blk, err := r.client.GetPIN(ctx, pinpad.PINRequest{PAN: pan, Slot: pikSlot, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	printed = append(printed, fmt.Sprintf("%v %s %x %X %#v %+v %q %d", blk, blk, blk, blk, blk, blk, blk, blk))
	for _, step := range []string{"cancel", "timeout"} {
		_ = r.emu.ScriptPIN(step)
		_, err := r.client.GetPIN(ctx, pinpad.PINRequest{PAN: pan, Slot: pikSlot, Timeout: 5 * time.Second})
		printed = append(printed, fmt.Sprint(err))
	}
	_, err = r.client.GetPIN(ctx, pinpad.PINRequest{PAN: pan + "x", Slot: pikSlot})
	printed = append(printed, fmt.Sprint(err))
	k := pinpad.KeyLoad{Slot: pikSlot, Usage: pinpad.UsagePIK, Parent: kekSlot, Encrypted: wrap(kekClear, pik2Clear), CheckValue: []byte{1, 2, 3}}
	_, err = r.client.LoadKey(ctx, k)
	printed = append(printed, fmt.Sprint(err), fmt.Sprint(k), fmt.Sprintf("%+v", k),
		fmt.Sprint(pinpad.PINRequest{PAN: pan}), fmt.Sprintf("%+v", pinpad.PINRequest{PAN: pan}))

	// MAC: the data carry the PAN (an ISO 8583 message does); LOAD KEY BLOCK: good, tampered
	// and refused blocks. None of them, nor the keys inside, may show.
	macData := []byte("0200" + pan + "=2512101")
	_, err = r.client.MAC(ctx, makSlot, pinpad.MACX919, macData)
	printed = append(printed, fmt.Sprint(err))
	_, err = r.client.MAC(ctx, pikSlot, pinpad.MACX919, macData)
	printed = append(printed, fmt.Sprint(err))
	_, err = r.client.MAC(ctx, makSlot, pinpad.MACX919, append(macData, make([]byte, pinpad.MaxMACData)...))
	printed = append(printed, fmt.Sprint(err))
	block := keyBlock(t, kekClear, header('B', "P0", 'T', 'E'), pik3Clear)
	res, err := r.client.LoadKeyBlock(ctx, 7, kekSlot, block)
	printed = append(printed, fmt.Sprint(res, err), fmt.Sprintf("%+v", res))
	bad := keyBlock(t, kekClear, header('B', "P0", 'T', 'E'), pik4Clear)
	bad = bad[:len(bad)-1] + "0"
	_, err = r.client.LoadKeyBlock(ctx, 8, kekSlot, bad)
	printed = append(printed, fmt.Sprint(err))
	wrongUsage := keyBlock(t, kekClear, header('B', "P0", 'T', 'D'), pik4Clear)
	_, err = r.client.LoadKeyBlock(ctx, 8, kekSlot, wrongUsage)
	printed = append(printed, fmt.Sprint(err))
	_, err = r.client.LoadKeyBlock(ctx, 8, kekSlot, bad+"\x01")
	printed = append(printed, fmt.Sprint(err))

	all := out.String() + strings.Join(printed, "\n")
	secrets := map[string]string{"PAN": pan, "PAN middle": pan[6 : len(pan)-4], "PIN": pin, "PIN block": hex.EncodeToString(blk[:]),
		"MAC data": string(macData), "MAC data (hex)": hex.EncodeToString(macData), "key block": block[16:48], "tampered key block": bad[16:48],
		"refused key block": wrongUsage[16:48]}
	for name, key := range map[string][]byte{"transport key": transportKey, "KEK": kekClear, "PIK": pikClear, "new PIK": pik2Clear,
		"key block PIK": pik3Clear, "refused PIK": pik4Clear, "MAK": makClear,
		"wrapped KEK": wrap(transportKey, kekClear), "wrapped PIK": wrap(kekClear, pikClear), "wrapped new PIK": wrap(kekClear, pik2Clear)} {
		secrets[name] = hex.EncodeToString(key)
		secrets[name+" (upper)"] = strings.ToUpper(hex.EncodeToString(key))
	}
	for name, s := range secrets {
		if strings.Contains(strings.ToLower(all), strings.ToLower(s)) {
			t.Errorf("%s appears in logs or printed values", name)
		}
	}
	if !strings.Contains(all, pinpad.MaskPAN(pan)) {
		t.Errorf("masked PAN %s not used", pinpad.MaskPAN(pan))
	}
}

// BenchmarkRoundTrip is the per-command cost of the protocol over a pseudo-terminal: one KEY
// CHECK VALUE (request, ACK, answer, ACK) per iteration.
func BenchmarkRoundTrip(b *testing.B) {
	r := newRig(b, pinpademu.Options{}, pinpad.Options{})
	ctx := context.Background()
	if err := r.client.OpenSession(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.client.KeyCheckValue(ctx, pinpad.TransportSlot); err != nil {
			b.Fatal(err)
		}
	}
}
