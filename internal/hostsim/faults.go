package hostsim

import (
	"fmt"
	"slices"
	"sync"
)

// FaultKind is what a fault switch does to the answer of a request.
type FaultKind string

// Fault kinds. Except for drop and delay, the request is processed (its effect is in the
// ledger) and only the answer is spoiled — the case that makes a terminal reverse.
const (
	FaultNoAnswer  FaultKind = "noanswer"  // processed, never answered (the connection stays open)
	FaultDelay     FaultKind = "delay"     // answered late: the host waits Delay, then processes and answers
	FaultBadMAC    FaultKind = "badmac"    // processed, answered with a wrong MAC (field 64 added if the answer has none)
	FaultHalfFrame FaultKind = "halfframe" // processed, half the answer frame written, connection closed
	FaultGarbage   FaultKind = "garbage"   // processed, a length-prefixed frame of garbage written instead of the answer
	FaultDrop      FaultKind = "drop"      // lost before the host: not processed, not answered
)

// Fault is one fault switch.
type Fault struct {
	Kind FaultKind `json:"kind"`
	// MTI limits the fault to requests of that MTI ("0200"); empty: every request.
	MTI string `json:"mti,omitempty"`
	// Count is how many matching requests it applies to; 0: every one until cleared.
	Count int `json:"count,omitempty"`
	// Delay is the wait of a delay fault.
	Delay Duration `json:"delay,omitempty"`
}

func (f Fault) validate() error {
	switch f.Kind {
	case FaultNoAnswer, FaultBadMAC, FaultHalfFrame, FaultGarbage, FaultDrop:
	case FaultDelay:
		if f.Delay <= 0 {
			return fmt.Errorf("hostsim: a delay fault needs a delay")
		}
	default:
		return fmt.Errorf("hostsim: unknown fault kind %q", f.Kind)
	}
	if f.Count < 0 {
		return fmt.Errorf("hostsim: fault count %d", f.Count)
	}
	if f.MTI != "" && (len(f.MTI) != 4 || !isDigits(f.MTI)) {
		return fmt.Errorf("hostsim: fault MTI %q", f.MTI)
	}
	return nil
}

type faultSet struct {
	mu sync.Mutex
	fs []Fault
}

// take finds the first fault that matches mti, counts it down, and reports it.
func (s *faultSet) take(mti string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.fs {
		f := &s.fs[i]
		if f.MTI != "" && f.MTI != mti {
			continue
		}
		got := *f
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.fs = slices.Delete(s.fs, i, i+1)
			}
		}
		return got, true
	}
	return Fault{}, false
}

// AddFault adds a fault switch. Faults are matched in the order they were added; the first
// one matching a request applies.
func (s *Server) AddFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.mu.Lock()
	s.faults.fs = append(s.faults.fs, f)
	s.faults.mu.Unlock()
	return nil
}

// SetFaults replaces every fault switch (nil clears them).
func (s *Server) SetFaults(fs []Fault) error {
	for _, f := range fs {
		if err := f.validate(); err != nil {
			return err
		}
	}
	s.faults.mu.Lock()
	s.faults.fs = slices.Clone(fs)
	s.faults.mu.Unlock()
	return nil
}

// ClearFaults removes every fault switch.
func (s *Server) ClearFaults() { _ = s.SetFaults(nil) }

// Faults are the fault switches in force, with their remaining counts.
func (s *Server) Faults() []Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return slices.Clone(s.faults.fs)
}
