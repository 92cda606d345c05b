package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/keystore/tr31"
)

func runKeysLoad(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "keys load", "--file KEYFILE --device ID --sign-key FILE [flags]", `
Sends the keys of a key file (docs/keys.md) to a terminal as the command keys.load — the
file's keys and kek, unchanged — and follows its acks like "tmsctl send": progress on stderr.
Then prints, per role, the check value the terminal reports for the key it now holds, checked
against the file's kcv: ok, MISMATCH, or "not in the file".

Before anything is sent the file is checked as the terminal will check it (roles, TR-31
headers that fit the roles, KCV format, kek index, the device it names). In the lab, with
--check-kbpk (the terminal's transport key), every block is also unwrapped and its key's KCV
compared with the file's: a file that does not match is refused and nothing is sent.

The terminal replaces the key set as a whole: when it refuses one key (bad block, wrong KBPK,
KCV mismatch) none of them is loaded and the ack says why.

Exit status: 0 loaded and every KCV matches, 1 failed, rejected or a KCV mismatch, 2 usage,
bad key file or connection error, 3 no final ack within --wait.`)
	var cf connFlags
	cf.register(fs)
	var sf sendFlags
	sf.register(fs, true)
	file := fs.String("file", "", "key `file` (required)")
	checkKBPK := fs.String("check-kbpk", "", "lab: the terminal's transport key `file` (hex or aes:hex); unwrap every block and check its KCV before sending")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected argument %q", pos[0])
	case *file == "":
		return usageErr(fs, "--file is required")
	}
	if status, ok := sf.validate(fs); !ok {
		return status
	}
	f, err := readKeyFile(*file)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if f.Device != "" && f.Device != sf.device {
		return failf(env, ExitUsage, "%s is for device %s, not %s: nothing sent", *file, f.Device, sf.device)
	}
	if *checkKBPK != "" {
		notes, err := f.checkKCVs(*checkKBPK)
		if err != nil {
			return failf(env, ExitUsage, "%s: %v: nothing sent", *file, err)
		}
		for _, n := range notes {
			fmt.Fprintln(env.Stderr, n)
		}
	}
	body, err := tmsproto.Marshal(f)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	roles := make([]string, len(f.Keys))
	for i, k := range f.Keys {
		roles[i] = k.Role
	}
	ack, status := sf.send(ctx, env, fs, &cf, "keys.load", body, "keys.load ("+strings.Join(roles, ", ")+")")
	if status != ExitOK {
		return status
	}
	if ack.State != tmsproto.StateSucceeded {
		return printFinalAck(env, ack)
	}
	var res struct {
		Keys []struct {
			Role string `cbor:"role"`
			KCV  string `cbor:"kcv"`
			Alg  string `cbor:"alg"`
			Slot int    `cbor:"slot"`
		} `cbor:"keys"`
	}
	// Lenient on purpose: a newer agent may report more per key.
	if err := cbor.Unmarshal(ack.Result, &res); err != nil {
		printFinalAck(env, ack)
		return failf(env, ExitFailed, "keys.load result: %v", err)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tKCV\tALG\tSLOT\tCHECK")
	bad := 0
	reported := map[string]bool{}
	for _, k := range res.Keys {
		reported[k.Role] = true
		check := "ok"
		switch e := f.entry(k.Role); {
		case e == nil:
			check, bad = "MISMATCH: not in the file", bad+1
		case e.KCV == "":
			check = "loaded (the file gives no kcv)"
		case !strings.EqualFold(e.KCV, k.KCV):
			check, bad = "MISMATCH: the file says "+strings.ToUpper(e.KCV), bad+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", k.Role, k.KCV, k.Alg, k.Slot, check)
	}
	for _, e := range f.Keys {
		if !reported[e.Role] {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tMISSING: the terminal reports no key for it\n", e.Role)
			bad++
		}
	}
	tw.Flush()
	if bad > 0 {
		return failf(env, ExitFailed, "%d key(s) of %s do not match what %s reports: do not use this key set", bad, *file, sf.device)
	}
	fmt.Fprintf(env.Stderr, "%s holds the %d key(s) of %s\n", sf.device, len(f.Keys), *file)
	return ExitOK
}

// checkKCVs unwraps the blocks of the file (lab use): the master keys with the transport key
// in path, the working keys with the file's master key they come under, and compares each
// key's check value with the file's. Working keys whose master key is not in the file cannot
// be checked: the notes say so.
func (f *keyFile) checkKCVs(path string) (notes []string, err error) {
	transport, err := readSecretKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("--check-kbpk: %w", err)
	}
	defer transport.wipe()
	keks := map[int]secretKey{}
	defer func() {
		for _, k := range keks {
			k.wipe()
		}
	}()
	unwrap := func(kbpk secretKey, e keyFileEntry) (secretKey, error) {
		h, key, err := tr31.Unwrap(kbpk.key, e.Block)
		if err != nil {
			return secretKey{}, fmt.Errorf("%s: %w", e.Role, err)
		}
		k := secretKey{aes: h.Algorithm == 'A', key: key}
		cv, err := k.checkValue()
		if err != nil {
			k.wipe()
			return secretKey{}, fmt.Errorf("%s: %w", e.Role, err)
		}
		if e.KCV != "" && !strings.EqualFold(cv, e.KCV) {
			k.wipe()
			return secretKey{}, fmt.Errorf("%s: the file says kcv %s, the key in the block has %s", e.Role, strings.ToUpper(e.KCV), cv)
		}
		return k, nil
	}
	for _, e := range f.Keys {
		if i := kekIndexOf(e.Role); i >= 0 {
			k, err := unwrap(transport, e)
			if err != nil {
				return nil, err
			}
			keks[i] = k
		}
	}
	for _, e := range f.Keys {
		if isKEKRole(e.Role) {
			continue
		}
		kek, ok := secretKey{}, false
		if f.KEK != nil {
			kek, ok = keks[*f.KEK]
		}
		if !ok {
			notes = append(notes, fmt.Sprintf("%s not checked: its master key is not in the file", e.Role))
			continue
		}
		k, err := unwrap(kek, e)
		if err != nil {
			return nil, err
		}
		k.wipe()
	}
	return notes, nil
}
