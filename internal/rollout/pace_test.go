package rollout

import (
	"errors"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"100/min": 100, "100": 100, "5/s": 300, "300/h": 5, " 2.5 / min ": 2.5} {
		p, err := ParseRate(in)
		if err != nil || p.PerMinute != want || !p.Linear() || p.Exponential() {
			t.Errorf("%q: %+v %v, want %v per minute", in, p, err, want)
		}
	}
	for _, in := range []string{"", "0/min", "-3", "x/min", "5/day", "NaN", "Inf/min"} {
		if _, err := ParseRate(in); !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("%q: %v, want ErrInvalidPlan", in, err)
		}
	}
}

func TestParseWaves(t *testing.T) {
	for in, want := range map[string]Pace{
		"10x2@1m":   {Start: 10, Factor: 2, Every: time.Minute},
		"1x1.5@30s": {Start: 1, Factor: 1.5, Every: 30 * time.Second},
		"5x3":       {Start: 5, Factor: 3},
	} {
		p, err := ParseWaves(in)
		if err != nil || p != want {
			t.Errorf("%q: %+v %v, want %+v", in, p, err, want)
		}
		if back, err := ParseWaves(p.String()); err != nil || back != p {
			t.Errorf("%q: String %q reads back as %+v %v", in, p.String(), back, err)
		}
	}
	for _, in := range []string{"", "10", "0x2@1m", "10x0.5", "10x2@soon", "10x2@-1m", "ax2", "10xInf"} {
		if _, err := ParseWaves(in); !errors.Is(err, ErrInvalidPlan) {
			t.Errorf("%q: %v, want ErrInvalidPlan", in, err)
		}
	}
}

func TestWaveSizes(t *testing.T) {
	p := Pace{Start: 3, Factor: 1.5}
	var got []int
	for k := range 5 {
		got = append(got, p.waveSize(k))
	}
	want := []int{3, 5, 7, 11, 16} // 3, 4.5, 6.75, 10.125, 15.19 rounded up
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waves %v, want %v", got, want)
		}
	}
	if n := (Pace{Start: 10, Factor: 10}).waveSize(40); n <= 0 {
		t.Fatalf("a late wave overflowed to %d", n)
	}
}

// FuzzParsePace feeds the -rate and -exp flag readers: whatever they accept is a valid pace.
func FuzzParsePace(f *testing.F) {
	f.Add("100/min", "10x2@1m")
	f.Add("5/s", "1x1")
	f.Fuzz(func(t *testing.T, rate, waves string) {
		if p, err := ParseRate(rate); err == nil {
			if err := p.check(); err != nil || !p.Linear() {
				t.Fatalf("ParseRate(%q) = %+v, invalid: %v", rate, p, err)
			}
		}
		if p, err := ParseWaves(waves); err == nil {
			if err := p.check(); err != nil || !p.Exponential() || p.waveSize(3) < 1 {
				t.Fatalf("ParseWaves(%q) = %+v, invalid: %v", waves, p, err)
			}
		}
	})
}
