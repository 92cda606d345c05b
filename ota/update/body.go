package update

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/manifest"
)

// SourceSpec says where a component's bytes come from. With neither URL nor Transfer the
// terminal pulls it over MQTT under the transfer id derived from its SHA-256 (blob.ID).
type SourceSpec struct {
	// URL is an HTTPS address (a "virtual host" of the TMS) fetched with Range requests.
	// Plain http is accepted only on a loopback address (laboratory, tests).
	URL string `cbor:"url,omitempty"`
	// CA names a certificate of the terminal's store (cert.put, usage "ca") to trust for URL
	// instead of the system roots.
	CA string `cbor:"ca,omitempty"`
	// Transfer is the MQTT block-pull transfer id the TMS serves it under.
	Transfer string `cbor:"transfer,omitempty"`
}

// InstallBody is the body of ota.install.
type InstallBody struct {
	Manifest []byte                `cbor:"manifest"`
	Sources  map[string]SourceSpec `cbor:"sources,omitempty"`
	// MaxTries is how many starts the new agent gets to pass its health check (1..10, 3).
	MaxTries int `cbor:"maxTries,omitempty"`
	// HealthDeadlineSec bounds one start's health check (30..3600 s, 300).
	HealthDeadlineSec int64 `cbor:"healthDeadlineSec,omitempty"`
	// RequireSettled makes the install wait until the batch is settled (empty).
	RequireSettled bool `cbor:"requireSettled,omitempty"`
	// Now installs outside the maintenance window (an urgent fix). It never overrides the wait
	// for a payment in progress.
	Now bool `cbor:"now,omitempty"`

	signed *manifest.Signed
}

// Signed is the verified manifest (set by DecodeInstall).
func (b *InstallBody) Signed() *manifest.Signed { return b.signed }

// AppsBody is the body of apps.set: the terminal's desired Android APK set.
type AppsBody struct {
	Manifest       []byte                `cbor:"manifest"`
	Sources        map[string]SourceSpec `cbor:"sources,omitempty"`
	RequireSettled bool                  `cbor:"requireSettled,omitempty"`
	Now            bool                  `cbor:"now,omitempty"`

	signed *manifest.Signed
}

// Signed is the verified manifest (set by DecodeApps).
func (b *AppsBody) Signed() *manifest.Signed { return b.signed }

// FileBody is the body of file.put: one file to a named location. Files are data, not
// software: the command key's signature covers the size and hash, no release key is needed.
type FileBody struct {
	Location string `cbor:"location"`
	Name     string `cbor:"name"`
	Size     int64  `cbor:"size"`
	SHA256   []byte `cbor:"sha256"`
	SourceSpec
}

// CancelBody is the body of ota.cancel.
type CancelBody struct {
	Command string `cbor:"command"`
}

// MaxFileSize bounds file.put.
const MaxFileSize = 256 << 20

var transferRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func invalid(format string, args ...any) error {
	return &manifest.Error{Reason: manifest.ReasonInvalid, Err: fmt.Errorf(format, args...)}
}

// DecodeInstall decodes and checks an ota.install body: the manifest's signature and form,
// and that every source names a component of that release. What depends on the terminal's
// state (rollback, downgrade, model) is checked when the command runs.
func DecodeInstall(raw []byte, v *manifest.Verifier) (*InstallBody, error) {
	var b InstallBody
	if err := tmsproto.Unmarshal(raw, &b); err != nil {
		return nil, invalid("body: %w", err)
	}
	signed, err := verifyWithSources(v, b.Manifest, b.Sources)
	if err != nil {
		return nil, err
	}
	switch {
	case b.MaxTries < 0 || b.MaxTries > 10:
		return nil, invalid("maxTries: %d is not 1..10", b.MaxTries)
	case b.HealthDeadlineSec != 0 && (b.HealthDeadlineSec < 30 || b.HealthDeadlineSec > 3600):
		return nil, invalid("healthDeadlineSec: %d is not 30..3600", b.HealthDeadlineSec)
	}
	for _, c := range signed.Release.Components {
		if c.Kind == manifest.KindAPK {
			return nil, invalid("component %s: APKs are installed with apps.set (the terminal's app set)", c.Name)
		}
	}
	b.signed = signed
	return &b, nil
}

// DecodeApps decodes and checks an apps.set body: a release of APK components only.
func DecodeApps(raw []byte, v *manifest.Verifier) (*AppsBody, error) {
	var b AppsBody
	if err := tmsproto.Unmarshal(raw, &b); err != nil {
		return nil, invalid("body: %w", err)
	}
	signed, err := verifyWithSources(v, b.Manifest, b.Sources)
	if err != nil {
		return nil, err
	}
	for _, c := range signed.Release.Components {
		if c.Kind != manifest.KindAPK {
			return nil, invalid("component %s: kind %s in an app set (only apk)", c.Name, c.Kind)
		}
	}
	b.signed = signed
	return &b, nil
}

// DecodeFile decodes and checks a file.put body.
func DecodeFile(raw []byte) (*FileBody, error) {
	var b FileBody
	if err := tmsproto.Unmarshal(raw, &b); err != nil {
		return nil, invalid("body: %w", err)
	}
	switch {
	case b.Location == "":
		return nil, invalid("location: required")
	case b.Name == "":
		return nil, invalid("name: required")
	case b.Size <= 0 || b.Size > MaxFileSize:
		return nil, &manifest.Error{Reason: manifest.ReasonTooLarge, Err: fmt.Errorf("size: %d is not 1..%d", b.Size, MaxFileSize)}
	case len(b.SHA256) != 32:
		return nil, invalid("sha256: %d bytes, want 32", len(b.SHA256))
	}
	if err := checkSource("", b.SourceSpec); err != nil {
		return nil, err
	}
	return &b, nil
}

// DecodeCancel decodes an ota.cancel body.
func DecodeCancel(raw []byte) (CancelBody, error) {
	var b CancelBody
	if err := tmsproto.Unmarshal(raw, &b); err != nil {
		return b, invalid("body: %w", err)
	}
	if b.Command == "" || len(b.Command) > tmsproto.MaxCommandIDLen {
		return b, invalid("command: a command id is required")
	}
	return b, nil
}

func verifyWithSources(v *manifest.Verifier, raw []byte, sources map[string]SourceSpec) (*manifest.Signed, error) {
	if len(raw) == 0 {
		return nil, invalid("manifest: required")
	}
	signed, err := v.Verify(raw)
	if err != nil {
		return nil, err
	}
	for name, src := range sources {
		if !hasComponent(signed.Release, name) {
			return nil, &manifest.Error{Reason: manifest.ReasonMixedRelease, Component: name,
				Err: fmt.Errorf("not part of release %s (serial %d)", signed.Release.Name, signed.Release.Serial)}
		}
		if err := checkSource(name, src); err != nil {
			return nil, err
		}
	}
	return signed, nil
}

func hasComponent(r manifest.Release, name string) bool {
	for _, c := range r.Components {
		if c.Name == name {
			return true
		}
	}
	return false
}

func checkSource(name string, s SourceSpec) error {
	bad := func(format string, args ...any) error {
		return &manifest.Error{Reason: manifest.ReasonInvalid, Component: name, Err: fmt.Errorf(format, args...)}
	}
	if s.URL != "" && s.Transfer != "" {
		return bad("source: url and transfer are exclusive")
	}
	if s.Transfer != "" && !transferRe.MatchString(s.Transfer) {
		return bad("source: transfer id %q must match [A-Za-z0-9_-]{1,64}", s.Transfer)
	}
	if s.CA != "" && s.URL == "" {
		return bad("source: ca without url")
	}
	if s.URL == "" {
		return nil
	}
	u, err := url.Parse(s.URL)
	if err != nil || u.Host == "" {
		return bad("source: url %q is not an absolute URL", s.URL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return bad("source: plain http only on loopback; use https")
		}
	default:
		return bad("source: url scheme %q (https only)", u.Scheme)
	}
	return nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errCancelled is the cause of a job's context when ota.cancel stops it.
var errCancelled = errors.New("cancelled by ota.cancel")
