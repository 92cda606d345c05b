package pinpademu

import (
	"fmt"
	"strings"
	"time"
)

// Outcome is what the scripted cardholder does at a GET PIN.
type Outcome int

const (
	// EnterPIN types Entry.PIN and presses confirm.
	EnterPIN Outcome = iota
	// Cancel presses the cancel key.
	Cancel
	// TimeOut lets the entry time out (reported at once, without waiting for the timeout).
	TimeOut
	// Bypass presses confirm with no digits.
	Bypass
	// Wait only delays the next entry by Entry.Delay.
	Wait
)

// Entry is one step of the scripted cardholder. Each GET PIN consumes the Wait steps at the
// head of the queue and the first other step.
type Entry struct {
	Outcome Outcome
	PIN     string        // for EnterPIN
	Delay   time.Duration // before the step takes effect
}

// ParseEntry reads the text form of a step: a PIN of 4..12 digits, "cancel", "timeout",
// "bypass", or "wait <duration>" (e.g. "wait 1.5s").
func ParseEntry(s string) (Entry, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "cancel":
		return Entry{Outcome: Cancel}, nil
	case "timeout":
		return Entry{Outcome: TimeOut}, nil
	case "bypass":
		return Entry{Outcome: Bypass}, nil
	}
	if rest, ok := strings.CutPrefix(s, "wait "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < 0 {
			return Entry{}, fmt.Errorf("pinpademu: script step %q: bad duration", s)
		}
		return Entry{Outcome: Wait, Delay: d}, nil
	}
	if len(s) < 4 || len(s) > 12 || strings.Trim(s, "0123456789") != "" {
		// The text is not echoed back: it may be a PIN typed slightly wrong.
		return Entry{}, fmt.Errorf("pinpademu: script step of %d characters is neither a 4..12 digit PIN nor a keyword", len(s))
	}
	return Entry{Outcome: EnterPIN, PIN: s}, nil
}

// Script appends steps to the scripted cardholder's queue.
func (e *Emulator) Script(steps ...Entry) {
	e.mu.Lock()
	e.script = append(e.script, steps...)
	e.mu.Unlock()
	e.poke()
}

// ScriptPIN appends steps in their text form (see ParseEntry).
func (e *Emulator) ScriptPIN(steps ...string) error {
	var parsed []Entry
	for _, s := range steps {
		en, err := ParseEntry(s)
		if err != nil {
			return err
		}
		parsed = append(parsed, en)
	}
	e.Script(parsed...)
	return nil
}

// ScriptLen is the number of steps still queued.
func (e *Emulator) ScriptLen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.script)
}

// nextStep takes the next step: waits at the head add up into its delay. ok is false when the
// queue holds no step other than waits (those are consumed).
func (e *Emulator) nextStep() (Entry, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var delay time.Duration
	for len(e.script) > 0 {
		st := e.script[0]
		e.script = e.script[1:]
		delay += st.Delay
		if st.Outcome != Wait {
			st.Delay = delay
			return st, true
		}
	}
	if e.opt.DefaultPIN != "" {
		return Entry{Outcome: EnterPIN, PIN: e.opt.DefaultPIN, Delay: delay}, true
	}
	return Entry{}, false
}
