// Package rollout sends one signed command to many terminals at a controlled pace and follows
// each terminal to its final ack, halting when too many fail.
//
// Durability is the point: a terminal's command is signed once and its raw bytes committed
// (state sent) before it is published, and every state heard from a terminal is committed
// before the engine acts on it. A rollout interrupted anywhere (crash, ^C, lost broker) is
// resumed by sending the SAME bytes again to the terminals still in flight: the agent's
// command journal answers a repeat with the current or final ack of the first delivery, so a
// terminal never gets a second command from one rollout.
package rollout

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Pace says how fast new terminals get the command. The zero Pace sends as fast as MaxInFlight
// allows.
type Pace struct {
	// PerMinute is the linear pace: terminals started per minute, counted from the start (or
	// resumption) of the run.
	PerMinute float64
	// Exponential waves: Start terminals, then ×Factor each wave. A wave begins when the
	// previous one is finished (every terminal final or timed out) and Every has passed since
	// the previous wave began.
	Start  int
	Factor float64
	Every  time.Duration
}

// Linear reports whether p is a linear pace.
func (p Pace) Linear() bool { return p.PerMinute > 0 }

// Exponential reports whether p is a pace in waves.
func (p Pace) Exponential() bool { return p.Start > 0 }

func (p Pace) check() error {
	switch {
	case p.PerMinute < 0 || math.IsNaN(p.PerMinute) || math.IsInf(p.PerMinute, 0):
		return fmt.Errorf("%w: rate %v per minute", ErrInvalidPlan, p.PerMinute)
	case p.Start < 0:
		return fmt.Errorf("%w: first wave of %d", ErrInvalidPlan, p.Start)
	case p.Linear() && p.Exponential():
		return fmt.Errorf("%w: a pace is either a rate or waves, not both", ErrInvalidPlan)
	case p.Exponential() && (p.Factor < 1 || math.IsInf(p.Factor, 0) || math.IsNaN(p.Factor)):
		return fmt.Errorf("%w: wave factor %v must be at least 1", ErrInvalidPlan, p.Factor)
	case p.Every < 0:
		return fmt.Errorf("%w: wave interval %v", ErrInvalidPlan, p.Every)
	}
	return nil
}

// String writes p the way ParsePace reads it.
func (p Pace) String() string {
	switch {
	case p.Linear():
		return strconv.FormatFloat(p.PerMinute, 'g', -1, 64) + "/min"
	case p.Exponential():
		return fmt.Sprintf("%dx%s@%s", p.Start, strconv.FormatFloat(p.Factor, 'g', -1, 64), p.Every)
	}
	return "unpaced"
}

// waveSize is the size of wave k (0-based): Start·Factor^k, rounded up, bounded so that a
// long rollout cannot overflow.
func (p Pace) waveSize(k int) int {
	f := float64(p.Start) * math.Pow(p.Factor, float64(k))
	if f >= math.MaxInt32 || math.IsInf(f, 0) || math.IsNaN(f) {
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(f-1e-9)))
}

// Plan is a rollout as the operator asks for it.
type Plan struct {
	Name string
	Kind string
	Body []byte // CBOR map; empty = {}
	// Targets are the terminal ids in the order they get the command.
	Targets []string
	Pace    Pace
	// MaxFailureRatio halts the rollout when (failed+timed out)/finished exceeds it, once
	// MinSample terminals are finished. 0 halts on the first failure past the sample; 1 never
	// halts.
	MaxFailureRatio float64
	MinSample       int           // default 10
	Timeout         time.Duration // per terminal, from its send to its final ack; default 10 min
	// Expires is how long a signed command stays valid; default Timeout, so a terminal that
	// gets it after the rollout gave up on it refuses it as expired instead of running it
	// unobserved.
	Expires     time.Duration
	MaxInFlight int // terminals sent but not final; default 1000
}

// Defaults of a Plan's zero fields.
const (
	DefaultMinSample   = 10
	DefaultTimeout     = 10 * time.Minute
	DefaultMaxInFlight = 1000
)

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidName reports whether name can name a rollout.
func ValidName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("%w: name %q must match [A-Za-z0-9_.-]{1,64}", ErrInvalidPlan, name)
	}
	return nil
}

// withDefaults fills in the zero fields.
func (p Plan) withDefaults() Plan {
	if p.MinSample == 0 {
		p.MinSample = DefaultMinSample
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultTimeout
	}
	if p.Expires == 0 {
		p.Expires = p.Timeout
	}
	if p.MaxInFlight == 0 {
		p.MaxInFlight = DefaultMaxInFlight
	}
	return p
}

// check validates a plan with its defaults filled in.
func (p Plan) check() error {
	if err := ValidName(p.Name); err != nil {
		return err
	}
	switch {
	case p.Kind == "":
		return fmt.Errorf("%w: no command kind", ErrInvalidPlan)
	case len(p.Body) > 0 && p.Body[0]>>5 != 5:
		return fmt.Errorf("%w: the body is not a CBOR map", ErrInvalidPlan)
	case len(p.Targets) == 0:
		return fmt.Errorf("%w: no targets", ErrInvalidPlan)
	case !(p.MaxFailureRatio >= 0 && p.MaxFailureRatio <= 1):
		return fmt.Errorf("%w: failure ratio %v must be within 0..1", ErrInvalidPlan, p.MaxFailureRatio)
	case p.MinSample < 0:
		return fmt.Errorf("%w: sample of %d", ErrInvalidPlan, p.MinSample)
	case p.Timeout < 0 || p.Expires < 0:
		return fmt.Errorf("%w: negative timeout or expiry", ErrInvalidPlan)
	case p.MaxInFlight < 0:
		return fmt.Errorf("%w: at most %d in flight", ErrInvalidPlan, p.MaxInFlight)
	}
	if err := p.Pace.check(); err != nil {
		return err
	}
	seen := make(map[string]bool, len(p.Targets))
	for _, id := range p.Targets {
		if !deviceIDRe.MatchString(id) {
			return fmt.Errorf("%w: target %q is not a device id", ErrInvalidPlan, id)
		}
		if seen[id] {
			return fmt.Errorf("%w: target %q listed twice", ErrInvalidPlan, id)
		}
		seen[id] = true
	}
	return nil
}

// deviceIDRe is tmsproto's device id rule, checked here without building an error per id.
var deviceIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// State is where a terminal is in a rollout.
type State string

// States. pending → sent → accepted → running → succeeded | failed; timed_out when no final
// ack came within the plan's Timeout (a final ack heard later still replaces it).
const (
	StatePending   State = "pending"
	StateSent      State = "sent"
	StateAccepted  State = "accepted"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateTimedOut  State = "timed_out"
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateSent, StateAccepted, StateRunning, StateSucceeded, StateFailed, StateTimedOut}

// Final reports whether s ends a terminal's part in the rollout.
func (s State) Final() bool { return s == StateSucceeded || s == StateFailed || s == StateTimedOut }

// InFlight reports whether the command is out and its outcome not known yet.
func (s State) InFlight() bool { return s == StateSent || s == StateAccepted || s == StateRunning }

// rank orders states so that an ack never moves a terminal backwards (a late "accepted"
// after "running", or the repeated answer of a re-send).
func (s State) rank() int {
	switch s {
	case StateSent:
		return 1
	case StateAccepted:
		return 2
	case StateRunning:
		return 3
	case StateSucceeded, StateFailed:
		return 5
	case StateTimedOut:
		return 4 // below a real outcome: a late final ack replaces it
	}
	return 0
}

// TerminalState is one terminal's part in a rollout.
type TerminalState struct {
	ID       string    `json:"id"`
	State    State     `json:"state"`
	Command  string    `json:"command,omitempty"` // the command id sent
	Stage    string    `json:"stage,omitempty"`
	Progress int       `json:"progress,omitempty"`
	Reason   string    `json:"reason,omitempty"` // the ack's reason, or "timeout"
	Detail   string    `json:"detail,omitempty"`
	SentAt   time.Time `json:"sentAt,omitzero"`
	DoneAt   time.Time `json:"doneAt,omitzero"`
}

// Summary counts a rollout's terminals by state.
type Summary struct {
	Name       string    `json:"name"`
	Kind       string    `json:"kind"`
	Total      int       `json:"total"`
	Pending    int       `json:"pending"`
	InFlight   int       `json:"inFlight"`
	Succeeded  int       `json:"succeeded"`
	Failed     int       `json:"failed"`
	TimedOut   int       `json:"timedOut"`
	Halted     bool      `json:"halted"`
	HaltReason string    `json:"haltReason,omitempty"`
	Created    time.Time `json:"created,omitzero"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
}

// Final is the number of terminals with an outcome.
func (s Summary) Final() int { return s.Succeeded + s.Failed + s.TimedOut }

// Done reports whether nothing more will happen without a resume: every terminal final, or
// halted with nothing in flight.
func (s Summary) Done() bool { return s.InFlight == 0 && (s.Pending == 0 || s.Halted) }

// Errors callers test with errors.Is.
var (
	ErrHalted      = errors.New("rollout: halted: failure ratio crossed")
	ErrNotFound    = errors.New("rollout: no such rollout")
	ErrExists      = errors.New("rollout: a rollout of that name exists")
	ErrFinished    = errors.New("rollout: finished already")
	ErrInvalidPlan = errors.New("rollout: invalid plan")
	// ErrBusy is returned when another engine (this process or another) runs the rollout.
	ErrBusy = errors.New("rollout: run by another engine")
)

// ParseRate reads a linear pace: "100/min", "5/s", "300/h", or a bare number per minute.
func ParseRate(s string) (Pace, error) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return Pace{}, fmt.Errorf("%w: rate %q: want a positive number per minute, e.g. 100/min", ErrInvalidPlan, s)
	}
	switch strings.TrimSpace(unit) {
	case "", "m", "min", "minute":
	case "s", "sec", "second":
		v *= 60
	case "h", "hour":
		v /= 60
	default:
		return Pace{}, fmt.Errorf("%w: rate %q: unit must be s, min or h", ErrInvalidPlan, s)
	}
	if math.IsInf(v, 0) || v == 0 {
		return Pace{}, fmt.Errorf("%w: rate %q out of range", ErrInvalidPlan, s)
	}
	return Pace{PerMinute: v}, nil
}

// ParseWaves reads an exponential pace "STARTxFACTOR@EVERY", e.g. "10x2@1m": 10 terminals,
// then 20, 40 … each wave at least a minute after the previous one began. "@EVERY" may be
// left out (0: as soon as the previous wave is finished).
func ParseWaves(s string) (Pace, error) {
	bad := func(why string) (Pace, error) {
		return Pace{}, fmt.Errorf("%w: waves %q: %s (e.g. 10x2@1m)", ErrInvalidPlan, s, why)
	}
	spec, every, hasEvery := strings.Cut(strings.TrimSpace(s), "@")
	start, factor, ok := strings.Cut(spec, "x")
	if !ok {
		return bad("want STARTxFACTOR")
	}
	n, err := strconv.Atoi(start)
	if err != nil || n < 1 {
		return bad("the first wave must be a positive count")
	}
	f, err := strconv.ParseFloat(factor, 64)
	if err != nil || !(f >= 1) || math.IsInf(f, 0) {
		return bad("the factor must be a number of at least 1")
	}
	p := Pace{Start: n, Factor: f}
	if hasEvery {
		d, err := time.ParseDuration(every)
		if err != nil || d < 0 {
			return bad("the interval must be a duration like 30s or 5m")
		}
		p.Every = d
	}
	return p, nil
}
