package termconfig

import "testing"

// Decoding and validating a full document is what a config.apply costs before the disk write.
func BenchmarkDecodeValidate(b *testing.B) {
	body := mustEncode(b, docFor(b, 39))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := Decode(body)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// Services read the active document on every transaction; it must cost nothing.
func BenchmarkActive(b *testing.B) {
	s := openStore(b, openDB(b, b.TempDir()))
	b.ReportAllocs()
	for b.Loop() {
		if s.Active() == nil {
			b.Fatal("no active document")
		}
	}
}

// Apply includes one fsynced bbolt commit.
func BenchmarkApply(b *testing.B) {
	s := openStore(b, openDB(b, b.TempDir()))
	docs := make([]*Document, 64)
	for i := range docs {
		docs[i] = docFor(b, uint64(i+1))
	}
	b.ReportAllocs()
	v := 0
	for b.Loop() {
		v++
		d := docs[(v-1)%len(docs)].Clone()
		d.Version = uint64(v)
		if _, err := s.Apply(d); err != nil {
			b.Fatal(err)
		}
	}
}
