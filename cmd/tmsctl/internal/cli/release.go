package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
	"github.com/posagent/posagent/ota/manifest"
)

// runRelease dispatches "tmsctl release sign|show".
func runRelease(ctx context.Context, env Env, args []string) int {
	const help = `Usage: tmsctl release <sign|show> [flags]

  sign     make a signed release manifest from a JSON spec and the component files
  show     decode a manifest, print it as JSON, check its signature with --trust
  install  send a manifest to a terminal (ota.install) and follow it with a progress bar
  apps     send a manifest of APKs as a terminal's app set (apps.set) and follow it

"tmsctl release <subcommand> -h" describes the flags.
`
	return dispatch(ctx, env, "release", help, args, map[string]runFunc{
		"sign": withoutCtx(runReleaseSign),
		"show": withoutCtx(runReleaseShow),
		"install": func(ctx context.Context, env Env, args []string) int {
			return runReleaseSend(ctx, env, args, "ota.install")
		},
		"apps": func(ctx context.Context, env Env, args []string) int {
			return runReleaseSend(ctx, env, args, "apps.set")
		},
	})
}

// sourceFlags collects repeated --source name=URL (or name=transfer:ID) flags.
type sourceFlags map[string]map[string]any

func (s sourceFlags) String() string { return "" }

func (s sourceFlags) Set(v string) error {
	name, src, ok := strings.Cut(v, "=")
	if !ok || name == "" || src == "" {
		return fmt.Errorf("want name=https://… or name=transfer:ID, got %q", v)
	}
	if id, ok := strings.CutPrefix(src, "transfer:"); ok {
		s[name] = map[string]any{"transfer": id}
	} else {
		s[name] = map[string]any{"url": src}
	}
	return nil
}

// runReleaseSend sends a manifest as ota.install or apps.set and follows it like "tmsctl
// send": stages and a progress bar on stderr, the final ack as a JSON line on stdout.
func runReleaseSend(ctx context.Context, env Env, args []string, kind string) int {
	fs := newFlagSet(env, "release "+map[string]string{"ota.install": "install", "apps.set": "apps"}[kind],
		"--manifest FILE --device ID --sign-key FILE [flags]", `
Sends the signed manifest FILE to a terminal as the command `+kind+` (body {manifest: the file's
bytes, …}; "tmsctl send --body" cannot carry bytes from JSON) and follows it: the stage
(downloading, verifying, waiting, installing, rebooting, health-check) and a progress bar on
stderr, the final ack as one JSON line on stdout. Components are pulled over MQTT unless a
--source says otherwise; "tmsctl serve" is the TMS side of that.

Exit status: 0 installed, 1 failed or rejected (the ack says why), 2 usage or connection
error, 3 no final ack within --wait.`)
	var cf connFlags
	cf.register(fs)
	manifestFile := fs.String("manifest", "", "signed manifest `file` written by release sign (required)")
	now := fs.Bool("now", false, "install outside the maintenance window (never during a payment)")
	settled := fs.Bool("require-settled", false, "wait until the batch is settled")
	sources := sourceFlags{}
	fs.Var(sources, "source", "`name=URL` (HTTPS Range) or name=transfer:ID (MQTT) for a component; repeatable")
	tries := fs.Int("max-tries", 0, "starts the new agent gets to pass its health check (1..10; default 3)")
	deadline := fs.Duration("health-deadline", 0, "bound of one health check (30s..1h; default 5m)")
	var sf sendFlags
	sf.register(fs, true)
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *manifestFile == "":
		return usageErr(fs, "--manifest is required")
	}
	if status, ok := sf.validate(fs); !ok {
		return status
	}
	raw, err := os.ReadFile(*manifestFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	signed, err := manifest.Parse(raw)
	if err != nil {
		return failf(env, ExitUsage, "%s: %v", *manifestFile, err)
	}
	body := map[string]any{"manifest": raw}
	if *now {
		body["now"] = true
	}
	if *settled {
		body["requireSettled"] = true
	}
	if len(sources) > 0 {
		body["sources"] = map[string]map[string]any(sources)
	}
	if kind == "ota.install" {
		if *tries != 0 {
			body["maxTries"] = *tries
		}
		if *deadline != 0 {
			body["healthDeadlineSec"] = int64(deadline.Seconds())
		}
	}
	enc, err := tmsproto.Marshal(body)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	ack, status := sf.send(ctx, env, fs, &cf, kind, enc, fmt.Sprintf("%s (release %s, serial %d)", kind, signed.Release.Name, signed.Release.Serial))
	if status != ExitOK {
		return status
	}
	return printFinalAck(env, ack)
}

// releaseSpec is the JSON a release is described in; sizes and digests come from the files.
type releaseSpec struct {
	Name       string          `json:"name"`
	Serial     uint64          `json:"serial"`
	Validity   string          `json:"validity"`
	Components []componentSpec `json:"components"`
}

type componentSpec struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Version     string   `json:"version"`
	Models      []string `json:"models"`
	Arch        string   `json:"arch"`
	File        string   `json:"file"`
	Package     string   `json:"package"`
	VersionCode int64    `json:"versionCode"`
	Location    string   `json:"location"`
	Path        string   `json:"path"`
}

// maxSpecSize bounds the spec file: 256 components fit in far less.
const maxSpecSize = 1 << 20

func runReleaseSign(env Env, args []string) int {
	fs := newFlagSet(env, "release sign", "--key FILE [--kid ID] --spec SPEC.json --out FILE", `
Makes a release manifest signed with a release key (the distributor's key, as for licences:
not the command key) and writes it to --out (never overwriting a file). SPEC.json describes
the release:

  {"name": "2026.11.1", "serial": 12, "validity": "90d",
   "components": [
     {"name": "posagent-arm64", "kind": "agent", "version": "1.5.0", "arch": "linux/arm64",
      "file": "dist/posagent-linux-arm64"},
     {"name": "kiosk", "kind": "apk", "version": "3.2.0", "models": ["WPOS-3"],
      "package": "kz.example.kiosk", "versionCode": 320, "file": "kiosk.apk"},
     {"name": "logo", "kind": "file", "version": "1", "location": "receipts",
      "path": "logo.png", "file": "logo.png"}]}

Each component's size and SHA-256 are computed from its "file" (relative to the spec's
directory). The release is issued now and expires after "validity" ("90d", or a Go duration
such as "2160h"; at most 366 days). "serial" must be higher than every serial this key has
signed before: terminals refuse a lower one. The key file is one written by "tmsctl keygen";
the key id is its name without .key unless --kid is given, and must match the id terminals
trust it under ([[license.release_keys]]). The key is never printed.`)
	keyFile := fs.String("key", "", "release private key `file` written by keygen (required)")
	kid := fs.String("kid", "", "release key `id` (default: the key file name without .key)")
	specFile := fs.String("spec", "", "release spec `file` (JSON, required)")
	out := fs.String("out", "", "manifest `file` to write (required)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *keyFile == "" || *specFile == "" || *out == "":
		return usageErr(fs, "--key, --spec and --out are required")
	}
	spec, err := readSpec(*specFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	validity, err := parseValidity(spec.Validity)
	if err != nil {
		return failf(env, ExitUsage, "%s: %v", *specFile, err)
	}
	now := time.Now()
	r := manifest.Release{
		V: manifest.Version, Name: spec.Name, Serial: spec.Serial,
		Issued: now.Unix(), Expires: now.Add(validity).Unix(),
	}
	dir := filepath.Dir(*specFile)
	for i, cs := range spec.Components {
		c := manifest.Component{Name: cs.Name, Kind: manifest.Kind(cs.Kind), Version: cs.Version, Models: cs.Models,
			Arch: cs.Arch, Package: cs.Package, VersionCode: cs.VersionCode, Location: cs.Location, Path: cs.Path}
		if cs.File == "" {
			return failf(env, ExitUsage, "%s: component %d (%q): no file", *specFile, i, cs.Name)
		}
		file := cs.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		if c.Size, c.SHA256, err = hashFile(file); err != nil {
			return failf(env, ExitUsage, "component %q: %v", cs.Name, err)
		}
		r.Components = append(r.Components, c)
	}
	key, err := tmsclient.LoadSignKey(*keyFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *kid != "" {
		key.ID = *kid
	}
	raw, err := manifest.Sign(key.Key, key.ID, r)
	if err != nil {
		return failf(env, ExitUsage, "%s: %v", *specFile, err)
	}
	if err := writeNew(*out, raw, 0o644); err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	digest := sha256.Sum256(raw)
	fmt.Fprintf(env.Stderr, "wrote %s (%d bytes, sha256 %x): release %s serial %d, %d components, expires %s, release key %s\n",
		*out, len(raw), digest, r.Name, r.Serial, len(r.Components),
		time.Unix(r.Expires, 0).UTC().Format(time.RFC3339), key.ID)
	return ExitOK
}

func readSpec(path string) (*releaseSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSpecSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSpecSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// A misspelt field ("model" for "models") would otherwise make a release for every model.
	dec.DisallowUnknownFields()
	var spec releaseSpec
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the spec", path)
	}
	return &spec, nil
}

var errValidity = errors.New(`validity: want days like "90d" or a duration like "2160h"`)

// parseValidity reads "90d" (days) or a Go duration ("2160h"), positive and at most
// manifest.MaxValidity.
func parseValidity(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > int(manifest.MaxValidity/(24*time.Hour)) {
			return 0, fmt.Errorf("%w: %q", errValidity, s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%w: %q", errValidity, s)
		}
	}
	if d < time.Second || d > manifest.MaxValidity {
		return 0, fmt.Errorf("validity %s: want 1s..%s", d, manifest.MaxValidity)
	}
	return d, nil
}

// hashFile streams path through SHA-256: component files can be far larger than memory.
func hashFile(path string) (int64, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	if !st.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("%s: not a regular file", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	return n, h.Sum(nil), nil
}

// releaseShow is what "release show" prints: the release with digests in hex.
type releaseShow struct {
	Name        string          `json:"name"`
	Serial      uint64          `json:"serial"`
	Issued      string          `json:"issued"`
	Expires     string          `json:"expires"`
	KeyID       string          `json:"kid"`
	Digest      string          `json:"digest"` // SHA-256 of the file
	Size        int             `json:"size"`
	Verified    *bool           `json:"verified,omitempty"`    // with --trust
	VerifyError string          `json:"verifyError,omitempty"` // why not
	Valid       string          `json:"validNow"`              // "yes", or why not (time only)
	Components  []componentShow `json:"components"`
}

type componentShow struct {
	manifest.Component
	SHA256 string `json:"sha256"` // hex, shadowing the embedded bytes
}

func runReleaseShow(env Env, args []string) int {
	fs := newFlagSet(env, "release show", "[--trust FILE [--kid ID]] FILE", `
Decodes the release manifest FILE and prints it as JSON on stdout (digests in hex, times in
RFC 3339). With --trust (a release public key file written by keygen; its key id is the file
name without .pub unless --kid is given) it also checks the signature and the shape rules as a
terminal does: "verified": true or false with "verifyError". "validNow" says whether the
release is within its validity window now.

Exit status: 0 decoded (and verified with --trust), 1 the manifest does not verify, 2 usage or
a file that is not a manifest.`)
	trustFile := fs.String("trust", "", "release public key `file` to verify with")
	kid := fs.String("kid", "", "key `id` of --trust (default: its file name without .pub)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) != 1 {
		return usageErr(fs, "need exactly one manifest FILE, got %d arguments", len(pos))
	}
	raw, err := readManifestFile(pos[0])
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	s, err := manifest.Parse(raw)
	if err != nil {
		return failf(env, ExitUsage, "%s: %v", pos[0], err)
	}
	show := releaseShow{
		Name: s.Release.Name, Serial: s.Release.Serial, KeyID: s.KeyID,
		Issued:  time.Unix(s.Release.Issued, 0).UTC().Format(time.RFC3339),
		Expires: time.Unix(s.Release.Expires, 0).UTC().Format(time.RFC3339),
		Digest:  hex.EncodeToString(s.Digest[:]), Size: len(raw), Valid: "yes",
	}
	for _, c := range s.Release.Components {
		show.Components = append(show.Components, componentShow{Component: c, SHA256: hex.EncodeToString(c.SHA256)})
	}
	// Only the time: model, arch and installed versions are the terminal's.
	if _, err := s.Check(manifest.Terminal{Now: time.Now()}, nil); err != nil {
		if r := manifest.ReasonOf(err); r == manifest.ReasonExpired || r == manifest.ReasonNotYetValid {
			show.Valid = err.Error()
		}
	}
	code := ExitOK
	if *trustFile != "" {
		keys, err := trustedKey(*trustFile, *kid)
		if err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		v, err := manifest.NewVerifier(keys)
		if err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		_, verr := v.Verify(raw)
		verified := verr == nil
		show.Verified = &verified
		if verr != nil {
			show.VerifyError = verr.Error()
			code = ExitFailed
		}
	}
	out, err := json.MarshalIndent(show, "", "  ")
	if err != nil {
		return failf(env, ExitFailed, "%v", err)
	}
	fmt.Fprintf(env.Stdout, "%s\n", out)
	return code
}

func readManifestFile(path string) ([]byte, error) {
	return readBounded(path, manifest.MaxManifestSize, "release manifest")
}
