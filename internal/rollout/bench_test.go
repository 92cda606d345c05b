package rollout

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRunUnpaced measures the engine's own cost per terminal (sign, commit, publish,
// three acks, commit) for a rollout of 2000 terminals answered at once by a fake sender, on a
// bbolt file in the test's temporary directory.
func BenchmarkRunUnpaced(b *testing.B) {
	const n = 2000
	key := testKeyB(b)
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(b.TempDir(), "rollout.db")
		st, err := OpenStore(path)
		if err != nil {
			b.Fatal(err)
		}
		acks := &fakeAcks{}
		sender := &fakeSender{acks: acks, respond: succeed}
		e := New(st, sender, key, acks, nil)
		name := fmt.Sprintf("bench-%d", i)
		if err := e.Create(Plan{Name: name, Kind: "stats.now", Targets: ids("B", n), MaxFailureRatio: 1}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		sum, err := e.Run(b.Context(), name)
		if err != nil || sum.Succeeded != n {
			b.Fatalf("%v %+v", err, sum)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "terminals/s")
	}
}
