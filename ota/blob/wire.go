// Package blob moves files from the TMS to a terminal over the MQTT session it already has:
// the terminal pulls blocks, the TMS answers. It is the fallback for terminals that reach
// nothing but the broker.
//
// The terminal asks on tms/v1/{device}/up/blob/{tid} with an envelope of kind "blob.req" whose
// body is {offset, length}; the TMS answers on tms/v1/{device}/down/blob/{tid} with one message
// per 64 KiB, {offset, data, size} or {error} when it cannot serve. Both use QoS 1 and no
// retained messages. The client keeps a small window of requests outstanding, assembles the
// blocks in order and asks again after a stall, so lost, late or duplicated messages cost time,
// never correctness: the transfer's SHA-256 has the last word anyway.
package blob

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
)

// Wire constants.
const (
	// BlockSize is the most data one answer carries.
	BlockSize = 64 << 10
	// MaxRequestLength bounds what one request may ask for, so a request cannot make the
	// server queue an unbounded answer.
	MaxRequestLength = 1 << 20
	// MaxErrorLen bounds the error text of an answer.
	MaxErrorLen = 256
	// KindRequest is the envelope kind of a request.
	KindRequest = "blob.req"
	// StreamPrefix starts the envelope stream of a request: "blob/" + transfer id.
	StreamPrefix = "blob/"

	// maxBlockMessage bounds a whole answer: the data plus the few small fields around it.
	maxBlockMessage = BlockSize + 512
	// maxRequestMessage bounds a whole request envelope.
	maxRequestMessage = 512
)

var transferIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrDecode is wrapped by every decoding failure of a request or an answer.
var ErrDecode = errors.New("blob: bad message")

// ValidID checks a transfer id.
func ValidID(tid string) error {
	if !transferIDRe.MatchString(tid) {
		return fmt.Errorf("blob: transfer id %q: must match [A-Za-z0-9_-]{1,64}", tid)
	}
	return nil
}

// ID is the default transfer id of a file: the first 16 bytes of its SHA-256 in hex.
func ID(sha256 []byte) string {
	return hex.EncodeToString(sha256[:min(len(sha256), 16)])
}

// Request is the body of a blob.req envelope.
type Request struct {
	Offset uint64 `cbor:"offset"`
	Length uint64 `cbor:"length"`
}

// Block is one answer.
type Block struct {
	Offset uint64 `cbor:"offset"`
	Data   []byte `cbor:"data"`
	Size   uint64 `cbor:"size"`            // the whole file's size
	Error  string `cbor:"error,omitempty"` // set: the server cannot serve this transfer, for good
}

// EncodeRequest builds the up/blob payload of a request.
func EncodeRequest(tid string, seq uint64, now time.Time, req Request) ([]byte, error) {
	body, err := tmsproto.Marshal(req)
	if err != nil {
		return nil, err
	}
	return tmsproto.Marshal(tmsproto.Envelope{V: tmsproto.Version, Stream: StreamPrefix + tid, Seq: seq,
		TS: now.UnixMilli(), Kind: KindRequest, Body: body})
}

// DecodeRequest decodes and checks the payload of an up/blob request for transfer tid.
func DecodeRequest(tid string, payload []byte) (Request, error) {
	if len(payload) > maxRequestMessage {
		return Request{}, fmt.Errorf("%w: request of %d bytes", ErrDecode, len(payload))
	}
	env, err := tmsproto.DecodeEnvelope(payload)
	if err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if env.Kind != KindRequest || env.Stream != StreamPrefix+tid {
		return Request{}, fmt.Errorf("%w: %s on stream %q for transfer %q", ErrDecode, env.Kind, env.Stream, tid)
	}
	var req Request
	if err := tmsproto.Unmarshal(env.Body, &req); err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if req.Length == 0 || req.Length > MaxRequestLength {
		return Request{}, fmt.Errorf("%w: length %d", ErrDecode, req.Length)
	}
	if req.Offset > 1<<62 {
		return Request{}, fmt.Errorf("%w: offset %d", ErrDecode, req.Offset)
	}
	return req, nil
}

// EncodeBlock builds a down/blob payload.
func EncodeBlock(b Block) ([]byte, error) { return tmsproto.Marshal(b) }

// DecodeBlock decodes and checks a down/blob payload. A block with Error set carries no data.
func DecodeBlock(payload []byte) (Block, error) {
	if len(payload) > maxBlockMessage {
		return Block{}, fmt.Errorf("%w: answer of %d bytes", ErrDecode, len(payload))
	}
	var b Block
	if err := tmsproto.Unmarshal(payload, &b); err != nil {
		return Block{}, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	switch {
	case b.Error != "":
		if len(b.Error) > MaxErrorLen || len(b.Data) > 0 {
			return Block{}, fmt.Errorf("%w: error answer with %d bytes of text and %d of data", ErrDecode, len(b.Error), len(b.Data))
		}
	case len(b.Data) > BlockSize:
		return Block{}, fmt.Errorf("%w: %d bytes of data", ErrDecode, len(b.Data))
	case b.Size > 1<<62 || b.Offset > b.Size || uint64(len(b.Data)) > b.Size-b.Offset:
		return Block{}, fmt.Errorf("%w: %d bytes at %d of a %d-byte file", ErrDecode, len(b.Data), b.Offset, b.Size)
	case len(b.Data) == 0:
		return Block{}, fmt.Errorf("%w: empty block", ErrDecode)
	}
	return b, nil
}
