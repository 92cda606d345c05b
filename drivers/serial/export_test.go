package serial

import "go.bug.st/serial/enumerator"

// SetEnumerate replaces the USB port enumeration until the returned function restores it.
// Not for parallel tests: the enumeration is package state.
func SetEnumerate(ports []*enumerator.PortDetails) (restore func()) {
	old := enumerate
	enumerate = func() ([]*enumerator.PortDetails, error) { return ports, nil }
	return func() { enumerate = old }
}
