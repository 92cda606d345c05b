package access

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCheck measures Check as the API server calls it: many cash registers at once, each
// with its own token.
func BenchmarkCheck(b *testing.B) {
	e := newEnv(b, nil)
	const clients = 50
	toks := make([]string, clients)
	for i := range toks {
		e.s.wmu.Lock()
		tok, err := e.s.issue(context.Background(), nil, fmt.Sprintf("Kassa%02d", i), time.Time{})
		e.s.wmu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = tok.Access
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := toks[next.Add(1)%clients]
		for pb.Next() {
			if _, err := e.s.Check(tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
