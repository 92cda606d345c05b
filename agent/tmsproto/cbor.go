package tmsproto

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Size bounds. CBOR byte strings carry their own length and the decoder has no cap for them, so
// every decode first checks the size of the whole input against one of these.
const (
	// MaxCommandSize bounds a down/cmd payload (the whole COSE_Sign1).
	MaxCommandSize = 64 << 10
	// MaxUplinkSize bounds an uplink envelope; log batches are cut to fit below it.
	MaxUplinkSize = 256 << 10
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// Core Deterministic Encoding: the same value always encodes to the same bytes, which is
	// what a signature is computed over and what makes records comparable.
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  4096,
		MaxMapPairs:       4096,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		// Maps decode into map[string]any, never map[any]any, so JSON rendering works.
		DefaultMapType: typeMapStringAny,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v with core deterministic encoding.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes data into v with the strict limits of this package. It is the decoder every
// body (command bodies included) goes through.
func Unmarshal(data []byte, v any) error {
	if len(data) > MaxUplinkSize {
		return &DecodeError{Reason: ReasonOversized, Err: fmt.Errorf("%d bytes exceeds %d", len(data), MaxUplinkSize)}
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		return &DecodeError{Reason: ReasonMalformed, Err: err}
	}
	return nil
}

// DecodeError is returned for input that is too large or not well-formed for its type.
type DecodeError struct {
	Reason Reason
	Err    error
}

func (e *DecodeError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }
