package fleet

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"
)

// benchTerminals is the fleet size of the idle-cost benchmark: FLEET_BENCH_N, default 500.
func benchTerminals(b *testing.B) int {
	if s := os.Getenv("FLEET_BENCH_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("FLEET_BENCH_N=%q", s)
		}
		return n
	}
	return 500
}

// rssBytes is the process's resident set (linux; 0 elsewhere).
func rssBytes() uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			return kb << 10
		}
	}
	return 0
}

type usage struct{ heap, stacks, goroutines, rss uint64 }

func measure() usage {
	runtime.GC()
	runtime.GC()
	heap, g := processMetrics()
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return usage{heap: heap, stacks: s[0].Value.Uint64(), goroutines: g, rss: rssBytes()}
}

// BenchmarkIdleTerminals starts a fleet against Mosquitto, waits until every terminal is
// connected and its outbox empty, and reports what one idle connected terminal costs this
// process: heap in use, goroutine stacks, goroutines and resident memory (the bbolt mapping included). Each
// iteration takes a fleet Snapshot, so ns/op is its cost at that size. Run with
// -benchtime=20x; FLEET_BENCH_N sets the size.
func BenchmarkIdleTerminals(b *testing.B) {
	n := benchTerminals(b)
	r := prepareRig(b, "FB-", n)
	time.Sleep(500 * time.Millisecond)
	before := measure()
	r.startFleet(func(o *Options) { o.StartRate = 1000 })
	r.allConnected()
	r.drained()
	time.Sleep(time.Second) // let the start's garbage and transient goroutines go
	after := measure()
	b.ResetTimer()
	for b.Loop() {
		if s := r.fleet.Snapshot(); s.Terminals != n {
			b.Fatalf("snapshot of %d terminals", s.Terminals)
		}
	}
	b.StopTimer()
	per := func(a, z uint64) float64 { return (float64(a) - float64(z)) / float64(n) }
	b.ReportMetric(per(after.heap, before.heap), "heapB/terminal")
	b.ReportMetric(per(after.stacks, before.stacks), "stackB/terminal")
	b.ReportMetric(per(after.goroutines, before.goroutines), "goroutines/terminal")
	b.ReportMetric(per(after.rss, before.rss), "rssB/terminal")
	b.ReportMetric(float64(n), "terminals")
}
