package cli

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/keystore/tr31"
)

func runKeysWrap(env Env, args []string) int {
	fs := newFlagSet(env, "keys wrap", "--kbpk-file F --role ROLE (--key HEX | --key-file F | --random) [--out FILE | --append FILE]", `
Wraps one key in a TR-31 key block and writes it as a key file entry {role, block, kcv}:
for test and lab use (a key management system does this in its HSM). The key block
protection key (KBPK) is the terminal's transport key for a master key (kek0..kek9), the master
key for a working key (pik, mak, tdk).

Key files (--kbpk-file, --key-file, --save-clear) hold one line: hex of a TDES key (16 or 24
bytes), or aes: then hex of an AES key (16, 24 or 32 bytes) — the format of the agent's
keystore.transport_key_file. Only a master key may be AES, and only under an AES KBPK.

The header follows the role: kekN K0 mode B, pik P0 mode E, mak M3 mode C, tdk D0 mode B;
algorithm T (A for an AES master key), key version 00, non-exportable. The version is B under a
TDES KBPK and D under an AES one. The KCV is 3 bytes of E(K, 0…0) for TDES, of the CMAC of
zeros for AES, as the terminal reports it.

Without --out or --append the key file is printed on stdout. With --append the entry is added
to an existing file; a working key wrapped under a KBPK whose KCV is not that of the file's
master key of the same load is refused. Keys are never printed; --random prints the KCV only
and writes the clear key only to --save-clear (created 0600, never overwritten).`)
	kbpkFile := fs.String("kbpk-file", "", "`file` with the wrapping key: the transport key for kekN, the master key for pik/mak/tdk (required)")
	role := fs.String("role", "", "`role`: "+roleList+" (required)")
	keyHex := fs.String("key", "", "the key in `hex` (aes:HEX for an AES master key); never printed")
	keyFileArg := fs.String("key-file", "", "`file` with the key (hex, or aes:hex)")
	random := fs.Bool("random", false, "generate a random key (prints only its KCV)")
	alg := fs.String("alg", "tdes", "`algorithm` of a --random key: tdes, or aes for a master key")
	length := fs.Int("length", 16, "length in `bytes` of a --random key: TDES 16 or 24, AES 16, 24 or 32")
	version := fs.String("version", "", "TR-31 `version`: B (TDES KBPK) or D (AES KBPK) (default: from the KBPK)")
	device := fs.String("device", "", "terminal `id` the file is for (written as \"device\")")
	kek := fs.Int("kek", -1, "master key `index` the working keys come under (written as \"kek\"; default: the terminal's active one)")
	out := fs.String("out", "", "new key `file` to write (never overwritten)")
	appendTo := fs.String("append", "", "existing key `file` to add the entry to")
	saveClear := fs.String("save-clear", "", "with --random: write the clear key to this new `file` (0600; lab only)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	sources := 0
	for _, s := range []bool{set["key"], *keyFileArg != "", *random} {
		if s {
			sources++
		}
	}
	rh, roleOK := roleOf(*role)
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument (a key is given with --key, never as an argument)")
	case *kbpkFile == "" || *role == "":
		return usageErr(fs, "--kbpk-file and --role are required")
	case !roleOK:
		return usageErr(fs, "--role %q: want %s", *role, roleList)
	case sources != 1:
		return usageErr(fs, "give the key with exactly one of --key, --key-file and --random")
	case *out != "" && *appendTo != "":
		return usageErr(fs, "--out and --append exclude each other")
	case *saveClear != "" && !*random:
		return usageErr(fs, "--save-clear goes with --random only")
	case *version != "" && *version != "B" && *version != "D":
		return usageErr(fs, "--version %q: want B or D", *version)
	case *alg != "tdes" && *alg != "aes":
		return usageErr(fs, "--alg %q: want tdes or aes", *alg)
	case (set["alg"] || set["length"]) && !*random:
		return usageErr(fs, "--alg and --length go with --random; a given key says its algorithm (aes:HEX) and length")
	case *length < 1 || *length > 32:
		return usageErr(fs, "--length %d: want TDES 16 or 24, AES 16, 24 or 32", *length)
	case set["kek"] && (*kek < 0 || *kek >= kekSlots):
		return usageErr(fs, "--kek %d: want 0..%d", *kek, kekSlots-1)
	}
	if *device != "" {
		if err := tmsproto.ValidDeviceID(*device); err != nil {
			return usageErr(fs, "%v", err)
		}
	}

	kbpk, err := readSecretKeyFile(*kbpkFile)
	if err != nil {
		return failf(env, ExitUsage, "KBPK: %v", err)
	}
	defer kbpk.wipe()
	switch *version {
	case "D":
		kbpk.aes = true // version D means an AES KBPK, with or without the aes: prefix
	case "B":
		if kbpk.aes {
			return failf(env, ExitUsage, "KBPK: version B needs a TDES key block protection key, %s holds an AES one", *kbpkFile)
		}
	}
	if err := kbpk.checkLength(); err != nil {
		return failf(env, ExitUsage, "KBPK in %s %v", *kbpkFile, err)
	}
	kbpkKCV, err := kbpk.checkValue()
	if err != nil {
		return failf(env, ExitUsage, "KBPK: %v", err)
	}

	var key secretKey
	switch {
	case set["key"]:
		if key, err = parseSecretKey(*keyHex); err != nil {
			return failf(env, ExitUsage, "--key %v", err)
		}
	case *keyFileArg != "":
		if key, err = readSecretKeyFile(*keyFileArg); err != nil {
			return failf(env, ExitUsage, "--key-file: %v", err)
		}
	default:
		key = secretKey{aes: *alg == "aes", key: make([]byte, *length)}
		if _, err := rand.Read(key.key); err != nil {
			return failf(env, ExitFailed, "random key: %v", err)
		}
	}
	defer key.wipe()
	what := "--key"
	if *random {
		what = "the --random key"
	} else if *keyFileArg != "" {
		what = "the key in " + *keyFileArg
	}
	if err := key.checkLength(); err != nil {
		return failf(env, ExitUsage, "%s %v", what, err)
	}
	if key.aes && !rh.aes {
		return failf(env, ExitUsage, "%s is AES: only a master key (kekN) may be AES, a %s is TDES", what, *role)
	}
	if key.aes && !kbpk.aes {
		return failf(env, ExitUsage, "%s is AES: an AES key is only delivered under an AES KBPK (aes:HEX, version D)", what)
	}

	h := tr31.Header{Version: 'B', Usage: strings.Split(rh.usages, ",")[0], Algorithm: 'T', ModeOfUse: rh.modes[0],
		KeyVersion: "00", Exportability: 'N'}
	if kbpk.aes {
		h.Version = 'D'
	}
	if key.aes {
		h.Algorithm = 'A'
	}
	block, err := tr31.Wrap(kbpk.key, h, key.key)
	if err != nil {
		return failf(env, ExitUsage, "wrap: %v", err)
	}
	cv, err := key.checkValue()
	if err != nil {
		return failf(env, ExitUsage, "KCV: %v", err)
	}

	// The file: a new one, or the one to append to.
	f := &keyFile{}
	if *appendTo != "" {
		if f, err = readKeyFile(*appendTo); err != nil {
			return failf(env, ExitUsage, "--append: %v", err)
		}
		if e := f.entry(*role); e != nil {
			return failf(env, ExitUsage, "%s already has %s (KCV %s): a load carries one key per role", *appendTo, *role, e.KCV)
		}
	}
	if *device != "" {
		if f.Device != "" && f.Device != *device {
			return failf(env, ExitUsage, "%s is for device %s, not %s", *appendTo, f.Device, *device)
		}
		f.Device = *device
	}
	if set["kek"] {
		if f.KEK != nil && *f.KEK != *kek {
			return failf(env, ExitUsage, "%s says kek %d, not %d", *appendTo, *f.KEK, *kek)
		}
		f.KEK = kek
	}
	if !isKEKRole(*role) {
		note, err := f.checkWorkingKBPK(*role, kbpkKCV)
		if err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		if note != "" {
			fmt.Fprintln(env.Stderr, note)
		}
	}
	f.Keys = append(f.Keys, keyFileEntry{Role: *role, Block: block, KCV: cv})
	if err := f.validate(); err != nil {
		return failf(env, ExitFailed, "the key file would not be valid: %v", err)
	}
	data, err := f.marshal()
	if err != nil {
		return failf(env, ExitFailed, "%v", err)
	}

	if *saveClear != "" {
		if err := writeFileAtomic(*saveClear, []byte(key.text()+"\n"), 0o600, true); err != nil {
			return failf(env, ExitUsage, "--save-clear: %v", err)
		}
	}
	dest := "stdout"
	switch {
	case *out != "":
		err, dest = writeFileAtomic(*out, data, 0o644, true), *out
	case *appendTo != "":
		err, dest = writeFileAtomic(*appendTo, data, 0o644, false), *appendTo
	default:
		_, err = env.Stdout.Write(data)
	}
	if err != nil {
		if *saveClear != "" {
			_ = os.Remove(*saveClear)
		}
		return failf(env, ExitUsage, "%v", err)
	}
	fmt.Fprintf(env.Stderr, "%s: KCV %s, TR-31 %c %s %c %c, %d-byte %s key under KBPK KCV %s → %s\n",
		*role, cv, h.Version, h.Usage, h.Algorithm, h.ModeOfUse, len(key.key), key.algName(), kbpkKCV, dest)
	if *saveClear != "" {
		fmt.Fprintf(env.Stderr, "clear key written to %s (0600): lab use only, delete it once loaded\n", *saveClear)
	}
	if dest != "stdout" {
		fmt.Fprintf(env.Stdout, "%s %s\n", *role, cv)
	}
	return ExitOK
}

// checkWorkingKBPK checks a working key about to join the file against the file's master
// keys: the terminal unwraps it with master key index kek (the file's), so when the file
// carries that master key, the KBPK must be it. Without a kek in the file, a master key of the
// file whose KCV is the KBPK's becomes the file's kek (the note says so).
func (f *keyFile) checkWorkingKBPK(role, kbpkKCV string) (note string, err error) {
	if f.KEK != nil {
		e := f.entry(fmt.Sprintf("kek%d", *f.KEK))
		if e != nil && e.KCV != "" && !strings.EqualFold(e.KCV, kbpkKCV) {
			return "", fmt.Errorf("the KBPK (KCV %s) is not the file's kek%d (KCV %s), under which the terminal will unwrap the %s", kbpkKCV, *f.KEK, strings.ToUpper(e.KCV), role)
		}
		return "", nil
	}
	var kekRoles []string
	for _, e := range f.Keys {
		if isKEKRole(e.Role) {
			kekRoles = append(kekRoles, e.Role)
			if strings.EqualFold(e.KCV, kbpkKCV) {
				i := kekIndexOf(e.Role)
				f.KEK = &i
				return fmt.Sprintf("the KBPK is the file's %s: the file now says kek %d, so the working keys load under it", e.Role, i), nil
			}
		}
	}
	if len(kekRoles) > 0 {
		return "", fmt.Errorf("the KBPK (KCV %s) is none of the file's master keys (%s): give --kek to load the %s under a master key already on the terminal", kbpkKCV, strings.Join(kekRoles, ", "), role)
	}
	return "", nil
}
