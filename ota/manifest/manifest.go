package manifest

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Format constants.
const (
	// Version is the payload version this package reads and writes.
	Version = 1
	// MaxManifestSize bounds the signed form (the whole COSE_Sign1), checked before decoding.
	MaxManifestSize = 64 << 10
	// MaxValidity bounds Expires - Issued: a release must be re-signed at least yearly, which
	// is what limits a freeze attack.
	MaxValidity = 366 * 24 * time.Hour
	// MaxComponents bounds the components of one release.
	MaxComponents = 256
	// MaxModels bounds the models of one component.
	MaxModels = 64
	// MaxPathLen bounds a file component's Path.
	MaxPathLen = 128
	// DefaultMaxSize is Terminal.MaxSize when it is 0.
	DefaultMaxSize = 1 << 30
	// ClockSkew is how far in the terminal's future a release may have been issued: terminals
	// without a battery-backed clock or NTP yet are often hours off.
	ClockSkew = 24 * time.Hour
)

// Kind is what a component is, which decides the installer.
type Kind string

// The kinds.
const (
	KindAgent       Kind = "agent"       // a posagent binary for an A/B slot
	KindComponent   Kind = "component"   // a per-model system component, installed by the board's hook
	KindAPK         Kind = "apk"         // an Android package
	KindFile        Kind = "file"        // a file put into a named location
	KindCertificate Kind = "certificate" // a certificate (chain, optionally with key) for the store
	KindConfig      Kind = "config"      // a configuration document
)

// Kinds are the known kinds.
var Kinds = []Kind{KindAgent, KindComponent, KindAPK, KindFile, KindCertificate, KindConfig}

// Archs are the known OS/architectures, spelt as runtime GOOS/GOARCH.
var Archs = []string{"linux/arm64", "linux/arm", "android/arm64", "linux/amd64"}

// Component is one file of a release and what to do with it.
type Component struct {
	Name    string   `cbor:"name" json:"name"`                         // unique in the release, ^[a-z0-9][a-z0-9._-]{0,63}$
	Kind    Kind     `cbor:"kind" json:"kind"`                         // one of Kinds
	Version string   `cbor:"version" json:"version"`                   // see ValidVersion; compare with CompareVersions
	Models  []string `cbor:"models,omitempty" json:"models,omitempty"` // board models it is for; empty = every model
	Arch    string   `cbor:"arch,omitempty" json:"arch,omitempty"`     // one of Archs; required for kind agent
	Size    int64    `cbor:"size" json:"size"`                         // exact byte size, > 0
	SHA256  []byte   `cbor:"sha256" json:"sha256"`                     // 32 bytes

	Package     string `cbor:"package,omitempty" json:"package,omitempty"`         // apk: Android package name (required)
	VersionCode int64  `cbor:"versionCode,omitempty" json:"versionCode,omitempty"` // apk: versionCode (required, > 0)
	Location    string `cbor:"location,omitempty" json:"location,omitempty"`       // file/config: named location (required for file); certificate: its usage (ca, client, server)
	Path        string `cbor:"path,omitempty" json:"path,omitempty"`               // file/config: file name inside the location
}

// Release is the signed payload: a named set of components.
type Release struct {
	V          uint        `cbor:"v" json:"v"`                   // Version
	Name       string      `cbor:"name" json:"name"`             // e.g. "2026.11.1"
	Serial     uint64      `cbor:"serial" json:"serial"`         // > 0; increases with every release the key signs
	Issued     int64       `cbor:"issued" json:"issued"`         // unix seconds
	Expires    int64       `cbor:"expires" json:"expires"`       // unix seconds, > Issued, at most MaxValidity after
	Components []Component `cbor:"components" json:"components"` // 1..MaxComponents
}

var (
	componentNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	releaseNameRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
	modelRe         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$`)
	locationRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	// Android: at least two segments, each a Java identifier start; 255 is the platform's limit.
	packageRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$`)
)

// maxProblems bounds how many violations one Validate error lists, so an ack stays small.
const maxProblems = 16

// problems collects the violations of a release.
type problems struct {
	errs      []error
	n         int
	component string // the first component at fault
}

func (p *problems) add(component, format string, args ...any) {
	p.n++
	if p.n == 1 {
		p.component = component
	}
	if len(p.errs) >= maxProblems {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if component != "" {
		msg = fmt.Sprintf("component %q: %s", component, msg)
	}
	p.errs = append(p.errs, errors.New(msg))
}

func (p *problems) err() error {
	if p.n == 0 {
		return nil
	}
	errs := p.errs
	if p.n > len(errs) {
		errs = append(errs, fmt.Errorf("and %d more", p.n-len(errs)))
	}
	return &Error{Reason: ReasonInvalid, Component: p.component, Err: errors.Join(errs...)}
}

// Validate checks the shape of the release on its own (not the signature, terminal or time).
// The error, if any, is an *Error with ReasonInvalid listing the violations (the first
// offending component in Component).
func (r *Release) Validate() error {
	var p problems
	if r.V != Version {
		p.add("", "version %d, want %d", r.V, Version)
	}
	if !releaseNameRe.MatchString(r.Name) {
		p.add("", "name %q must match %s", clip(r.Name), releaseNameRe)
	}
	if r.Serial == 0 {
		p.add("", "serial must be positive")
	}
	if r.Issued <= 0 {
		p.add("", "issued must be positive")
	}
	if r.Expires <= r.Issued {
		p.add("", "expires %d not after issued %d", r.Expires, r.Issued)
	} else if r.Issued > 0 && r.Expires-r.Issued > int64(MaxValidity/time.Second) {
		p.add("", "valid for %d s, at most %d s", r.Expires-r.Issued, int64(MaxValidity/time.Second))
	}
	if n := len(r.Components); n == 0 || n > MaxComponents {
		p.add("", "%d components, want 1..%d", n, MaxComponents)
	}
	seen := make(map[string]bool, len(r.Components))
	for i := range r.Components {
		c := &r.Components[i]
		if seen[c.Name] {
			p.add(c.Name, "listed twice")
		}
		seen[c.Name] = true
		c.validate(&p)
	}
	checkAgentOverlap(r.Components, &p)
	return p.err()
}

func (c *Component) validate(p *problems) {
	name := c.Name
	if !componentNameRe.MatchString(name) {
		p.add("", "component name %q must match %s", clip(name), componentNameRe)
		name = clip(name)
	}
	if !slices.Contains(Kinds, c.Kind) {
		p.add(name, "unknown kind %q", clip(string(c.Kind)))
	}
	if err := ValidVersion(c.Version); err != nil {
		p.add(name, "version %q: %v", clip(c.Version), ErrBadVersion)
	}
	if len(c.Models) > MaxModels {
		p.add(name, "%d models, at most %d", len(c.Models), MaxModels)
	}
	for i, m := range c.Models {
		if !modelRe.MatchString(m) {
			p.add(name, "model %q must match %s", clip(m), modelRe)
		}
		for _, prev := range c.Models[:i] {
			if strings.EqualFold(prev, m) {
				p.add(name, "model %q listed twice", clip(m))
			}
		}
	}
	switch {
	case c.Arch == "" && c.Kind == KindAgent:
		p.add(name, "arch is required for kind agent")
	case c.Arch != "" && !slices.Contains(Archs, c.Arch):
		p.add(name, "arch %q: want one of %s", clip(c.Arch), strings.Join(Archs, ", "))
	}
	if c.Size <= 0 {
		p.add(name, "size %d must be positive", c.Size)
	}
	if len(c.SHA256) != 32 {
		p.add(name, "sha256 is %d bytes, want 32", len(c.SHA256))
	}
	// Fields of other kinds must be empty: a field an installer ignores is a field an
	// attacker or a typo can use to make two readers disagree.
	if c.Kind == KindAPK {
		if len(c.Package) > 255 || !packageRe.MatchString(c.Package) {
			p.add(name, "package %q is not an Android package name", clip(c.Package))
		}
		if c.VersionCode <= 0 {
			p.add(name, "versionCode %d must be positive", c.VersionCode)
		}
	} else if c.Package != "" || c.VersionCode != 0 {
		p.add(name, "package and versionCode are for kind apk only")
	}
	if c.Kind == KindFile || c.Kind == KindConfig {
		if c.Kind == KindFile && (c.Location == "" || c.Path == "") {
			p.add(name, "location and path are required for kind file")
		}
		if c.Location != "" && !locationRe.MatchString(c.Location) {
			p.add(name, "location %q must match %s", clip(c.Location), locationRe)
		}
		if c.Path != "" {
			if err := ValidPath(c.Path); err != nil {
				p.add(name, "%v", err)
			}
		}
	} else if c.Kind == KindCertificate {
		// For a certificate, location is its usage in the store.
		switch c.Location {
		case "ca", "client", "server":
		default:
			p.add(name, "location (the certificate's usage) must be ca, client or server, not %q", clip(c.Location))
		}
		if c.Path != "" {
			p.add(name, "path is for kinds file and config only")
		}
	} else if c.Location != "" || c.Path != "" {
		p.add(name, "location and path are for kinds file, config and certificate only")
	}
}

// ErrBadPath is wrapped by ValidPath's errors.
var ErrBadPath = errors.New("not a plain file name")

// ValidPath reports whether p can name a file inside a location: 1..MaxPathLen bytes of UTF-8,
// no "/" or "\", no "..", not ".", no control characters (NUL included). It is a name, never
// a path, so an installer joining it to the location's directory cannot leave it.
func ValidPath(p string) error {
	switch {
	case p == "" || len(p) > MaxPathLen:
		return fmt.Errorf("path: %w: %d bytes, want 1..%d", ErrBadPath, len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("path: %w: not UTF-8", ErrBadPath)
	case p == "." || strings.Contains(p, ".."):
		return fmt.Errorf("path %q: %w: contains \"..\" or is \".\"", p, ErrBadPath)
	case strings.ContainsAny(p, `/\`):
		return fmt.Errorf("path %q: %w: contains a slash or backslash", p, ErrBadPath)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("path %q: %w: control character", p, ErrBadPath)
		}
	}
	return nil
}

// checkAgentOverlap refuses two agent builds that could both apply to one terminal (same arch,
// a model in common, or either for every model): which one to install would be a guess.
func checkAgentOverlap(cs []Component, p *problems) {
	for i := range cs {
		a := &cs[i]
		if a.Kind != KindAgent {
			continue
		}
		for j := range cs[:i] {
			b := &cs[j]
			if b.Kind == KindAgent && a.Arch == b.Arch && modelsOverlap(a.Models, b.Models) {
				p.add(a.Name, "agent build for %s overlaps %q on a model", a.Arch, b.Name)
			}
		}
	}
}

func modelsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(x, y) {
				return true
			}
		}
	}
	return false
}

// clip shortens a string for an error message: fields are bounded by the manifest size only,
// and an ack should not carry kilobytes of someone's garbage.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
