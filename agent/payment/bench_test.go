package payment_test

import (
	"context"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/keystore"
)

// Benchmarks of the payment path on the engine test rig: the host simulator over TCP on
// loopback, the PIN pad emulator over a pty (or the software key backend), the store on the
// temporary directory's disk. They report figures (docs/benchmarks.md, "Payments"); no
// benchmark fails on a time. The host simulator and the pad emulator run in this process, so
// allocs/op counts theirs too.

// refill is how many purchases the round-trip benchmarks let into the batch before they settle
// it with the timer stopped: the engine reads the whole batch at every purchase, so the
// batch's fill is part of the figure (see BenchmarkPurchaseRoundTripBatch250).
const refill = 50

// purchaseLoop times purchases on pan. After every timed purchases it settles the batch and
// puts fill purchases back in it, with the timer stopped. Besides ns/op it reports the time
// per purchase spent in the key store's MACs (mac-ns/op) and in the host exchanges
// (host-ns/op); the rest is the two commits and the engine's own work.
func purchaseLoop(b *testing.B, r *benchRig, pan, exp string, pinBlock []byte, every, fill int) {
	b.ReportAllocs()
	var mac, host time.Duration
	n := 0
	for b.Loop() {
		if n == every {
			b.StopTimer()
			r.settle()
			for range fill {
				r.purchase(pan, exp, 100, pinBlock)
			}
			n = 0
			b.StartTimer()
		}
		m0, h0 := r.timings()
		r.purchase(pan, exp, 100, pinBlock)
		m1, h1 := r.timings()
		mac, host = mac+m1-m0, host+h1-h0
		n++
	}
	b.ReportMetric(float64(mac.Nanoseconds())/float64(b.N), "mac-ns/op")
	b.ReportMetric(float64(host.Nanoseconds())/float64(b.N), "host-ns/op")
}

// BenchmarkPurchaseRoundTrip is one purchase (0200 with a PIN block typed once before the
// loop: the cardholder's entry is not timed) through the engine: the journal commit (one
// fsync), the MAC of the request on the PIN pad, the exchange with the host on a fresh TCP
// connection, the MAC check of the answer on the pad and the final commit (one fsync).
func BenchmarkPurchaseRoundTrip(b *testing.B) {
	r := newBenchRig(b, benchOptions{})
	pinBlock := r.pin(debitPAN)
	purchaseLoop(b, r, debitPAN, "3112", pinBlock, refill, 0)
}

// BenchmarkPurchaseRoundTripSoftKeys is the same purchase with the software key backend: the
// two MACs are computed in the agent instead of on the pad. The PIN block is made from the PIK
// of the sign-in answer (a pad would have made the same block).
func BenchmarkPurchaseRoundTripSoftKeys(b *testing.B) {
	r := newBenchRig(b, benchOptions{soft: true})
	pinBlock := r.pin(debitPAN)
	purchaseLoop(b, r, debitPAN, "3112", pinBlock, refill, 0)
}

// BenchmarkPurchaseRoundTripBatch250 is the purchase with 250–300 transactions in the batch
// (BenchmarkPurchaseRoundTrip: 0–50): before each purchase the engine decodes every
// transaction of the store twice (the owed reversals, then the batch count inside the
// journal's write transaction).
func BenchmarkPurchaseRoundTripBatch250(b *testing.B) {
	const fill = 250
	r := newBenchRig(b, benchOptions{})
	pinBlock := r.pin(debitPAN)
	for range fill {
		r.purchase(debitPAN, "3112", 100, pinBlock)
	}
	purchaseLoop(b, r, debitPAN, "3112", pinBlock, refill, fill)
}

// BenchmarkPurchaseRatios interleaves, on two rigs, a purchase with the PIN pad backend, a
// purchase with the software backend and the bare exchange of a purchase frame packed before
// the timer, so that the three see the same machine load; it reports each one's time and their
// ratios (ns/op is their sum). The bare frames carry their own batch number, which the engine
// never settles.
func BenchmarkPurchaseRatios(b *testing.B) {
	pad := newBenchRig(b, benchOptions{})
	soft := newBenchRig(b, benchOptions{soft: true})
	padPIN, softPIN := pad.pin(debitPAN), soft.pin(debitPAN)
	frames := make([][]byte, b.N)
	for i := range frames {
		frames[i] = pad.purchaseFrame(100000+i, 999, debitPAN, "3112", 100, padPIN)
	}
	c := pad.client()
	ctx := context.Background()
	var tPad, tSoft, tBare time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%refill == 0 {
			b.StopTimer()
			pad.settle()
			soft.settle()
			b.StartTimer()
		}
		t0 := time.Now()
		pad.purchase(debitPAN, "3112", 100, padPIN)
		t1 := time.Now()
		soft.purchase(debitPAN, "3112", 100, softPIN)
		t2 := time.Now()
		if _, err := c.Exchange(ctx, frames[i]); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		tPad, tSoft, tBare = tPad+t1.Sub(t0), tSoft+t2.Sub(t1), tBare+t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tPad.Nanoseconds())/n, "pad-ns/purchase")
	b.ReportMetric(float64(tSoft.Nanoseconds())/n, "soft-ns/purchase")
	b.ReportMetric(float64(tBare.Nanoseconds())/n, "bare-ns/exchange")
	b.ReportMetric(float64(tPad)/float64(tBare), "pad/bare")
	b.ReportMetric(float64(tSoft)/float64(tBare), "soft/bare")
	b.ReportMetric(float64(tPad)/float64(tSoft), "pad/soft")
}

// BenchmarkExchangeBare is the exchange alone: the client's Exchange of a purchase frame packed
// (with its PIN block and MAC) before the timer, on a fresh TCP connection to the same host.
// Each frame has its own trace number, so the host approves every one as it does the engine's.
// The ratios to the purchase come from BenchmarkPurchaseRatios (same load for both).
func BenchmarkExchangeBare(b *testing.B) {
	r := newBenchRig(b, benchOptions{})
	pinBlock := r.pin(debitPAN)
	frames := make([][]byte, b.N)
	for i := range frames {
		frames[i] = r.purchaseFrame(100000+i, 999, debitPAN, "3112", 100, pinBlock)
	}
	c := r.client()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Exchange(ctx, frames[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPadMAC is one MAC of a purchase-sized MAC block with the working MAK on the PIN
// pad, through the key store: the engine computes two per purchase.
func BenchmarkPadMAC(b *testing.B) {
	r := newBenchRig(b, benchOptions{})
	mab := make([]byte, 120)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Keys.MAC(ctx, keystore.MACUnionPayECB, mab); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJournalCommit is one committed write of a transaction-sized record on the rig's
// store (one fsync): the engine commits twice per purchase.
func BenchmarkJournalCommit(b *testing.B) {
	r := newBenchRig(b, benchOptions{soft: true})
	val := make([]byte, 300)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		err := r.Commit.Do(ctx, func(tx *store.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("bench"))
			if err != nil {
				return err
			}
			return bk.Put([]byte("txn"), val)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSettle300WithUpload is the settlement of a batch of 300 purchases the host finds
// unbalanced: the terminal counts the Visa card domestic (no BIN ranges configured), the host
// foreign. Timed: the totals (0500), 300 uploads (0320, each MACed on the pad and committed),
// the end of the upload and the batch close. The 300 purchases are made untimed before each
// settlement.
func BenchmarkSettle300WithUpload(b *testing.B) {
	const batch = 300
	r := newBenchRig(b, benchOptions{})
	pinBlock := r.pin(visaPAN)
	var mac, host time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for range batch {
			r.purchase(visaPAN, "2912", 100, pinBlock)
		}
		hostBatch := r.Engine.Status().Batch
		m0, h0 := r.timings()
		b.StartTimer()
		st := r.settle()
		b.StopTimer()
		m1, h1 := r.timings()
		mac, host = mac+m1-m0, host+h1-h0
		if st.DomBalanced && st.ForBalanced {
			b.Fatalf("settlement balanced: %+v", st)
		}
		if ts, _ := r.Host.Terminal(tid); ts.Uploads[hostBatch] != batch {
			b.Fatalf("host has %d uploads of batch %d, want %d", ts.Uploads[hostBatch], hostBatch, batch)
		}
		b.StartTimer()
	}
	uploads := float64(b.N * batch)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/uploads, "ns/upload")
	b.ReportMetric(float64(mac.Nanoseconds())/uploads, "mac-ns/upload")
	b.ReportMetric(float64(host.Nanoseconds())/uploads, "host-ns/upload")
}
