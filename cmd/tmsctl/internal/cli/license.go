package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// runLicense dispatches "tmsctl license issue|show|send".
func runLicense(ctx context.Context, env Env, args []string) int {
	const help = `Usage: tmsctl license <issue|show|send> [flags]

  issue   sign a licence for one terminal with a release key (the distributor's)
  show    decode a licence file, print it as JSON, check its signature with --pub
  send    send a licence file to a terminal (command license.put) and follow it

"tmsctl license <subcommand> -h" describes the flags.
`
	return dispatch(ctx, env, "license", help, args, map[string]runFunc{
		"issue": withoutCtx(runLicenseIssue),
		"show":  withoutCtx(runLicenseShow),
		"send":  runLicenseSend,
	})
}

func runLicenseIssue(env Env, args []string) int {
	fs := newFlagSet(env, "license issue", "--release-key FILE --serial S --platform P --id ID --features a,b --days N --out FILE", `
Signs a licence for the terminal with serial number S on platform P (linux-arm64, linux-armv7,
android-arm64, linux-amd64, or * for any) covering the features listed, valid from --not-before
(default now) for N days (0: never expires), and writes it to --out (never overwriting a file).
The release key is a private key file written by "tmsctl keygen"; the key id is its file name
without .key unless --kid is given. The terminal trusts the public half in its configuration as
[[license.release_keys]]. The key is never printed.`)
	keyFile := fs.String("release-key", "", "release private key `file` written by keygen (required)")
	kid := fs.String("kid", "", "release key `id` (default: the key file name without .key)")
	serial := fs.String("serial", "", "terminal serial `number` (required)")
	platform := fs.String("platform", "", "`platform` the licence is for, or * (required)")
	id := fs.String("id", "", "licence `id` (required)")
	features := fs.String("features", "", "comma-separated `features`, e.g. payments,qr,ecr (required)")
	days := fs.Int("days", 365, "validity in `days` from --not-before; 0: never expires")
	notBefore := fs.String("not-before", "", "start of validity, RFC 3339 `time` (default: now)")
	out := fs.String("out", "", "licence `file` to write (required)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *keyFile == "" || *serial == "" || *platform == "" || *id == "" || *features == "" || *out == "":
		return usageErr(fs, "--release-key, --serial, --platform, --id, --features and --out are required")
	case *days < 0:
		return usageErr(fs, "--days must not be negative")
	}
	if *platform != license.AnyPlatform && !slices.Contains(license.Platforms, *platform) {
		return usageErr(fs, "--platform %q: want one of %s or *", *platform, strings.Join(license.Platforms, ", "))
	}
	now := time.Now()
	start := now
	if *notBefore != "" {
		t, err := time.Parse(time.RFC3339, *notBefore)
		if err != nil {
			return usageErr(fs, "--not-before: %v", err)
		}
		start = t
	}
	var feats []string
	for f := range strings.SplitSeq(*features, ",") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(feats, f) {
			feats = append(feats, f)
		}
	}
	slices.Sort(feats)
	l := license.License{V: license.Version, ID: *id, Serial: *serial, Platform: *platform, Features: feats,
		Issued: now.Unix(), NotBefore: start.Unix()}
	if *days > 0 {
		l.Expires = start.Add(time.Duration(*days) * 24 * time.Hour).Unix()
	}
	key, err := tmsclient.LoadSignKey(*keyFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *kid != "" {
		key.ID = *kid
	}
	raw, err := license.Sign(key.Key, key.ID, l)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if err := writeNew(*out, raw, 0o644); err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	expires := "never"
	if l.Expires != 0 {
		expires = time.Unix(l.Expires, 0).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(env.Stderr, "wrote %s: licence %s for %s (%s), features %s, expires %s, release key %s\n",
		*out, l.ID, l.Serial, l.Platform, strings.Join(feats, ","), expires, key.ID)
	return ExitOK
}

// writeNew writes a new file with mode perm, never overwriting one; a failed write leaves
// no file behind.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// licenseShow is what "license show" prints.
type licenseShow struct {
	license.Info
	Size        int    `json:"size"`
	Verified    *bool  `json:"verified,omitempty"`    // with --pub
	VerifyError string `json:"verifyError,omitempty"` // why not
	Valid       string `json:"validNow"`              // "yes", or why not (time only)
}

func runLicenseShow(env Env, args []string) int {
	fs := newFlagSet(env, "license show", "[--pub FILE] FILE", `
Decodes the licence FILE and prints it as JSON on stdout. With --pub (a public key file written
by keygen; its key id is the file name without .pub unless --kid is given) it also checks the
signature: "verified": true or false with "verifyError".

Exit status: 0 decoded (and verified with --pub), 1 the signature does not verify, 2 usage or
a file that is not a licence.`)
	pubFile := fs.String("pub", "", "release public key `file` to verify with")
	kid := fs.String("kid", "", "key `id` of --pub (default: its file name without .pub)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) != 1 {
		return usageErr(fs, "need exactly one licence FILE, got %d arguments", len(pos))
	}
	raw, err := readLicenseFile(pos[0])
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	info, err := license.Parse(raw)
	if err != nil {
		return failf(env, ExitUsage, "%s: %v", pos[0], err)
	}
	show := licenseShow{Info: info, Size: len(raw), Valid: "yes"}
	if err := info.Valid(time.Now(), 0); err != nil {
		show.Valid = err.Error()
	}
	code := ExitOK
	if *pubFile != "" {
		keys, err := trustedKey(*pubFile, *kid)
		if err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		v, err := license.NewVerifier(keys)
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

func readLicenseFile(path string) ([]byte, error) {
	return readBounded(path, license.MaxSize, "licence")
}

func runLicenseSend(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "license send", "--license FILE --device ID --sign-key FILE [flags]", `
Sends the licence FILE to a terminal as the command license.put (body {license: the file's
bytes}; "tmsctl send --body" cannot carry bytes from JSON), then follows its acks like
"tmsctl send": progress on stderr, the final ack as one JSON line on stdout.

Exit status: 0 installed, 1 failed (the terminal refused the licence: the ack says why) or
rejected, 2 usage or connection error, 3 no final ack within --wait.`)
	var cf connFlags
	cf.register(fs)
	licFile := fs.String("license", "", "licence `file` written by license issue (required)")
	var sf sendFlags
	sf.register(fs, true)
	// Next to license issue's --release-key, say which key this one is.
	fs.Lookup("sign-key").Usage = "command private key `file` written by keygen (required)"
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *licFile == "":
		return usageErr(fs, "--license is required")
	}
	if status, ok := sf.validate(fs); !ok {
		return status
	}
	raw, err := readLicenseFile(*licFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	info, err := license.Parse(raw)
	if err != nil {
		return failf(env, ExitUsage, "%s: %v", *licFile, err)
	}
	if info.Serial != sf.device {
		fmt.Fprintf(env.Stderr, "tmsctl: warning: licence %s is for serial %s, sending to %s\n", info.ID, info.Serial, sf.device)
	}
	body, err := tmsproto.Marshal(map[string]any{"license": raw})
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	ack, status := sf.send(ctx, env, fs, &cf, "license.put", body, "license.put (licence "+info.ID+")")
	if status != ExitOK {
		return status
	}
	return printFinalAck(env, ack)
}
