package termconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/posagent/posagent/agent/tmsproto"
)

// MaxDocumentSize bounds an encoded document: it travels as a command body, so it can never be
// larger than a whole command.
const MaxDocumentSize = tmsproto.MaxCommandSize

// MaxJSONSize bounds a JSON document read by DecodeJSON; JSON spends more bytes on the same
// content than CBOR.
const MaxJSONSize = 4 * MaxDocumentSize

// DecodeError is returned for a body that is not a well-formed configuration document: too
// large, not CBOR (or JSON), wrong types, unknown or duplicate fields.
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string { return "termconfig: bad document: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes a CBOR document (the body of a config.apply command). It checks form only;
// Validate checks content, and Store.Apply does both.
func Decode(body []byte) (*Document, error) {
	if len(body) > MaxDocumentSize {
		return nil, &DecodeError{Err: fmt.Errorf("%d bytes exceeds %d", len(body), MaxDocumentSize)}
	}
	var d Document
	if err := tmsproto.Unmarshal(body, &d); err != nil {
		return nil, &DecodeError{Err: err}
	}
	return &d, nil
}

// DecodeJSON decodes a JSON document, for local files and tools. Unknown fields and trailing
// data are rejected as in Decode.
func DecodeJSON(data []byte) (*Document, error) {
	if len(data) > MaxJSONSize {
		return nil, &DecodeError{Err: fmt.Errorf("%d bytes exceeds %d", len(data), MaxJSONSize)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, &DecodeError{Err: err}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &DecodeError{Err: errors.New("trailing data after the document")}
	}
	return &d, nil
}

// Encode returns the canonical encoding of d (CBOR, core deterministic): equal documents
// encode to equal bytes, which is how the store compares content.
func Encode(d *Document) ([]byte, error) {
	b, err := tmsproto.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("termconfig: encode: %w", err)
	}
	return b, nil
}

// Digest is the short content fingerprint of an encoding: the first 8 bytes of its SHA-256,
// in hex, the same shape as tmsproto.Ref.
func Digest(encoded []byte) string {
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:8])
}

// Clone returns a deep copy of d.
func (d *Document) Clone() *Document {
	c := *d
	c.CashierProfile.SupervisorApproval = slices.Clone(d.CashierProfile.SupervisorApproval)
	c.TMS.LogUpload.Streams = slices.Clone(d.TMS.LogUpload.Streams)
	c.AcquirerProfile.Bearers = slices.Clone(d.AcquirerProfile.Bearers)
	c.AcquirerProfile.DNSServers = slices.Clone(d.AcquirerProfile.DNSServers)
	c.AuthHost.Addresses = slices.Clone(d.AuthHost.Addresses)
	c.Currencies = slices.Clone(d.Currencies)
	c.BINRanges = slices.Clone(d.BINRanges)
	c.QRHosts = slices.Clone(d.QRHosts)
	c.DynamicLimits = slices.Clone(d.DynamicLimits)
	c.EMVSpecialProcessing = slices.Clone(d.EMVSpecialProcessing)
	c.PrintProfile.HeaderLines = slices.Clone(d.PrintProfile.HeaderLines)
	c.PrintProfile.FooterLines = slices.Clone(d.PrintProfile.FooterLines)
	c.AllowedOperations = slices.Clone(d.AllowedOperations)
	c.Certificates = slices.Clone(d.Certificates)
	c.EMVApplications = slices.Clone(d.EMVApplications)
	c.PaymentProfile.Fees = slices.Clone(d.PaymentProfile.Fees)
	c.ECR.AllowedNetworks = slices.Clone(d.ECR.AllowedNetworks)
	c.Security.Diag.RevokedTokens = slices.Clone(d.Security.Diag.RevokedTokens)
	if d.Security.Diag.Permissions != nil {
		c.Security.Diag.Permissions = make(map[string][]string, len(d.Security.Diag.Permissions))
		for r, a := range d.Security.Diag.Permissions {
			c.Security.Diag.Permissions[r] = slices.Clone(a)
		}
	}
	return &c
}
