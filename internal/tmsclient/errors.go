package tmsclient

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by operations on a closed Client.
var ErrClosed = errors.New("tmsclient: client closed")

// InputError reports a bad argument from the caller (a device id, a command field, a broker
// URL, TLS options): nothing was sent.
type InputError struct {
	Field string
	Err   error
}

func (e *InputError) Error() string { return "tmsclient: invalid " + e.Field + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(field, format string, args ...any) *InputError {
	return &InputError{Field: field, Err: fmt.Errorf(format, args...)}
}
