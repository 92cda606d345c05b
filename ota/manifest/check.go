package manifest

import (
	"slices"
	"strings"
	"time"
)

// Terminal is what the update policy judges a release against.
type Terminal struct {
	Model     string            // board model; "" matches only components with no Models
	Arch      string            // runtime GOOS/GOARCH, e.g. "linux/arm64" (no GOARM level)
	Now       time.Time         // the terminal's clock
	Installed map[string]string // component name -> installed version
	HighWater map[string]uint64 // release key id -> highest serial accepted so far
	MaxSize   int64             // bound on one component's size (0 = DefaultMaxSize)
	// Force installs components at the installed version or below it (an operator's
	// deliberate repair or downgrade). Every other check still applies: a forced install
	// still needs a current release at or above the high-water serial.
	Force bool
}

func (t *Terminal) forModel(c *Component) bool {
	if len(c.Models) == 0 {
		return true
	}
	return t.Model != "" && slices.ContainsFunc(c.Models, func(m string) bool { return strings.EqualFold(m, t.Model) })
}

func (t *Terminal) forArch(c *Component) bool { return c.Arch == "" || c.Arch == t.Arch }

// Check applies the update policy and returns the components that apply to this terminal
// (matching model and arch) and are not already installed at that version, in manifest order.
// A release whose every applicable component is installed gives an empty list and no error.
//
// names, when non-empty, are component names the caller was asked about (e.g. the sources
// named in a command): every one must be in the release (else mixed_release) and apply to
// this terminal (else wrong_model or wrong_arch).
//
// The checks, in order, each an *Error with its Reason: expired (Now after Expires),
// not_yet_valid (Issued more than ClockSkew after Now), rollback (Serial below
// HighWater[KeyID]; equal is the same release again and passes), mixed_release, wrong_model
// (nothing in the release for this model, or a named component for another), wrong_arch (a
// named component for another arch, or agent builds in the release for this model but none
// for this arch; other archs' builds are skipped silently when one matches), then per
// applicable component: downgrade (older than installed, unless Force), too_large (Size above
// MaxSize).
//
// An installed version that is not a version (a developer build's "dev") counts as older
// than every release, so a developer terminal can be brought onto a release.
//
// The caller records Serial as the key's new high-water mark once the release is accepted.
func (s *Signed) Check(t Terminal, names []string) ([]Component, error) {
	r := &s.Release
	now := t.Now.Unix()
	if now > r.Expires {
		return nil, fail(ReasonExpired, "", "release %s expired at %s", r.Name, time.Unix(r.Expires, 0).UTC().Format(time.RFC3339))
	}
	if r.Issued > now+int64(ClockSkew/time.Second) {
		return nil, fail(ReasonNotYetValid, "", "release %s issued at %s, after this terminal's clock %s",
			r.Name, time.Unix(r.Issued, 0).UTC().Format(time.RFC3339), t.Now.UTC().Format(time.RFC3339))
	}
	if hw := t.HighWater[s.KeyID]; r.Serial < hw {
		return nil, fail(ReasonRollback, "", "release %s has serial %d, key %q already signed serial %d", r.Name, r.Serial, s.KeyID, hw)
	}

	byName := make(map[string]*Component, len(r.Components))
	for i := range r.Components {
		byName[r.Components[i].Name] = &r.Components[i]
	}
	for _, n := range names {
		c, ok := byName[n]
		if !ok {
			return nil, fail(ReasonMixedRelease, clip(n), "not in release %s", r.Name)
		}
		if !t.forModel(c) {
			return nil, fail(ReasonWrongModel, n, "for models %s, this terminal is %q", strings.Join(c.Models, ", "), t.Model)
		}
		if !t.forArch(c) {
			return nil, fail(ReasonWrongArch, n, "for %s, this terminal is %q", c.Arch, t.Arch)
		}
	}

	anyModel, agentOther, agentHere := false, "", false
	for i := range r.Components {
		c := &r.Components[i]
		if !t.forModel(c) {
			continue
		}
		anyModel = true
		if c.Kind == KindAgent {
			if t.forArch(c) {
				agentHere = true
			} else if agentOther == "" {
				agentOther = c.Name
			}
		}
	}
	if !anyModel {
		return nil, fail(ReasonWrongModel, "", "release %s has nothing for model %q", r.Name, t.Model)
	}
	if agentOther != "" && !agentHere {
		return nil, fail(ReasonWrongArch, agentOther, "release %s has no agent build for %q", r.Name, t.Arch)
	}

	maxSize := t.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	out := []Component{}
	for i := range r.Components {
		c := &r.Components[i]
		if !t.forModel(c) || !t.forArch(c) {
			continue
		}
		if have, ok := t.Installed[c.Name]; ok {
			cmp, err := CompareVersions(c.Version, have)
			if err != nil {
				cmp = 1 // see the doc comment: an unversioned install is older
			}
			switch {
			case cmp < 0 && !t.Force:
				return nil, fail(ReasonDowngrade, c.Name, "version %s is older than the installed %s", c.Version, have)
			case cmp == 0 && !t.Force:
				continue
			}
		}
		if c.Size > maxSize {
			return nil, fail(ReasonTooLarge, c.Name, "%d bytes, at most %d", c.Size, maxSize)
		}
		out = append(out, cloneComponent(c))
	}
	return out, nil
}

// cloneComponent copies c so the caller cannot change the verified release through it.
func cloneComponent(c *Component) Component {
	cp := *c
	cp.Models = slices.Clone(c.Models)
	cp.SHA256 = slices.Clone(c.SHA256)
	return cp
}
