package board

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"periph.io/x/conn/v3/gpio"
)

// The registry is process-global and never forgets; each run (-count=N) needs fresh names.
var run atomic.Int32

func fresh(name string) string { return fmt.Sprintf("%s-%d", name, run.Add(1)) }

type fakeBoard struct{ name, serial string }

func (b *fakeBoard) Name() string           { return b.name }
func (b *fakeBoard) Identity() Identity     { return Identity{Serial: b.serial} }
func (b *fakeBoard) Devices() []DeviceState { return nil }
func (b *fakeBoard) Close() error           { return nil }
func (b *fakeBoard) Profile() Profile       { return Profile{Name: b.name} }
func (b *fakeBoard) Pin(string) (gpio.PinIO, error) {
	return nil, ErrNoLine
}

func TestRegistry(t *testing.T) {
	a, bName := fresh("test-a"), fresh("test-b")
	Register(a, func(o Options) (Board, error) { return &fakeBoard{a, o.Serial}, nil })
	Register(bName, func(Options) (Board, error) { return nil, errors.New("no hardware") })

	names := Names()
	if !slices.Contains(names, a) || !slices.Contains(names, bName) || !slices.IsSorted(names) {
		t.Errorf("Names = %v", names)
	}
	b, err := Open(a, Options{Serial: "S1"})
	if err != nil || b.Name() != a || b.Identity().Serial != "S1" {
		t.Fatalf("Open = %v, %v", b, err)
	}
	if _, err := Open(bName, Options{}); err == nil || err.Error() != "board "+bName+": no hardware" {
		t.Errorf("failing open = %v", err)
	}
	if _, err := Open("nope", Options{}); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown = %v", err)
	}
}

func TestRegisterRejectsMistakes(t *testing.T) {
	dup := fresh("test-dup")
	Register(dup, func(Options) (Board, error) { return nil, nil })
	for name, f := range map[string]func(){
		"duplicate": func() { Register(dup, func(Options) (Board, error) { return nil, nil }) },
		"empty":     func() { Register("", func(Options) (Board, error) { return nil, nil }) },
		"nil":       func() { Register("test-nil", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s registration did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestOptionsLog(t *testing.T) {
	if (Options{}).Log() == nil {
		t.Fatal("nil default logger")
	}
}
