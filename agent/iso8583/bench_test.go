package iso8583

import "testing"

// A typical 0200: PAN, track 2, PIN block, field 55, MAC (the MAC function here is the real
// UnionPay ECB MAC with a DES MAK, as the payment engine will call it).
func BenchmarkPackPurchase(b *testing.B) {
	h := testHeader(b, false)
	m := purchase()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Pack(h, &m, macECB); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackPurchaseNoMAC(b *testing.B) {
	h := testHeader(b, false)
	m := purchase()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Pack(h, &m, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpackPurchase(b *testing.B) {
	m := purchase()
	f := mustPack(b, testHeader(b, false), &m, macECB)
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		if _, _, _, err := Unpack(f); err != nil {
			b.Fatal(err)
		}
	}
}
