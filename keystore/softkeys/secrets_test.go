package softkeys

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/posagent/posagent/keystore"
)

// TestNoKeyMaterialInLogsOrErrors runs every method, successes and failures, with the logger
// at Debug, and looks for every key used (clear, encrypted, the root key and the sealing key
// derived from it) in the log and in every error string.
func TestNoKeyMaterialInLogsOrErrors(t *testing.T) {
	e := newEnv(t)
	var errs strings.Builder
	note := func(err error) {
		if err != nil {
			errs.WriteString(err.Error())
			errs.WriteByte('\n')
		}
	}
	noteK := func(_ keystore.Key, err error) { note(err) }
	noteB := func(_ []byte, err error) { note(err) }
	noteL := func(_ []keystore.Key, err error) { note(err) }

	secrets := [][]byte{transportKey, kekKey, pikKey, pik2Key, makKey, mak8Key, tdkKey, aesTransport, aesKEK}
	enc := func(parent, key []byte) []byte {
		c := ecb(parent, key)
		secrets = append(secrets, c)
		return c
	}

	e.standard()
	// Every error of every method.
	noteK(e.b.InjectTransport(bg, keystore.TDES, pikKey, false))
	noteK(e.b.InjectTransport(bg, keystore.TDES, pikKey[:7], true))
	noteK(e.b.InjectTransport(bg, keystore.Algorithm(9), pikKey, true))
	noteK(e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, enc(kekKey, pik2Key), check(pikKey, 3)))
	noteK(e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, enc(kekKey, pik2Key), check(pikKey, 4)))
	noteK(e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, enc(kekKey, pik2Key)[:9], check(pik2Key, 3)))
	noteK(e.b.LoadEncrypted(bg, 2, 2, keystore.UsagePIK, enc(pikKey, pik2Key), check(pik2Key, 3)))
	noteK(e.b.LoadEncrypted(bg, 2, 9, keystore.UsagePIK, enc(kekKey, pik2Key), check(pik2Key, 3)))
	noteK(e.b.LoadEncrypted(bg, 99, 1, keystore.UsagePIK, enc(kekKey, pik2Key), check(pik2Key, 3)))
	noteK(e.b.LoadEncrypted(bg, 2, 1, keystore.UsageTransport, enc(kekKey, pik2Key), check(pik2Key, 3)))
	noteK(e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, enc(kekKey, pik2Key), check(pik2Key, 3)))
	noteK(e.b.LoadBlock(bg, 6, 0, wrap(t, transportKey, 'B', "K0", 'T', 'D', tdkKey)))
	for _, blk := range []string{
		wrap(t, kekKey, 'B', "P0", 'T', 'E', pikKey),
		wrap(t, kekKey, 'B', "K0", 'T', 'D', pikKey),
		wrap(t, kekKey, 'B', "P0", 'T', 'D', pikKey),
		wrap(t, kekKey, 'B', "B0", 'T', 'X', pikKey),
		wrap(t, makKey, 'B', "P0", 'T', 'E', pikKey),
		wrap(t, aesKEK, 'D', "P0", 'T', 'E', pikKey),
		"B0016P0TE00N0000",
	} {
		noteK(e.b.LoadBlock(bg, 2, 1, blk))
		noteK(e.b.LoadBlock(bg, 2, 6, blk))
		noteK(e.b.LoadBlock(bg, 2, 3, blk))
	}
	data := []byte("some data to MAC")
	for _, slot := range []int{0, 1, 2, 3, 5, 9, 99} {
		for _, alg := range []keystore.MACAlgorithm{keystore.MACX99, keystore.MACX919, keystore.MACUnionPayECB, 7} {
			noteB(e.b.MAC(bg, slot, alg, data))
		}
	}
	noteL(e.b.Keys(bg))
	// AES hierarchy.
	noteK(e.b.InjectTransport(bg, keystore.AES, aesTransport, true))
	noteK(e.b.LoadBlock(bg, 7, 0, wrap(t, aesTransport, 'D', "K1", 'A', 'B', aesKEK)))
	noteK(e.b.LoadBlock(bg, 8, 7, wrap(t, aesKEK, 'D', "M1", 'T', 'C', makKey)))
	noteK(e.b.LoadBlock(bg, 8, 7, wrap(t, aesTransport, 'D', "M1", 'T', 'C', makKey)))
	noteK(e.b.LoadEncrypted(bg, 8, 7, keystore.UsageMAK, enc(kekKey, makKey), check(makKey, 3)))
	// Tampering and another device's root key.
	v := e.rawGet(8)
	v[len(v)-3] ^= 0x10
	e.rawPut(8, v)
	noteB(e.b.MAC(bg, 8, keystore.MACX919, data))
	noteL(e.b.Keys(bg))
	root, err := os.ReadFile(e.root)
	if err != nil {
		t.Fatal(err)
	}
	sealKey, err := hkdf.Key(sha256.New, root, nil, sealInfo, 32)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, root, sealKey)
	e.close()
	_ = os.Remove(e.root)
	e.open()
	noteL(e.b.Keys(bg))
	noteB(e.b.MAC(bg, 3, keystore.MACX919, data))
	note(e.b.Erase(bg, false))
	note(e.b.Erase(bg, true))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	noteK(e.b.LoadEncrypted(ctx, 2, 1, keystore.UsagePIK, enc(kekKey, pik2Key), check(pik2Key, 3)))
	if root2, err := os.ReadFile(e.root); err == nil {
		secrets = append(secrets, root2)
	}

	logs := e.log.String()
	if !strings.Contains(logs, "does not open") || !strings.Contains(logs, "key loaded") || errs.Len() == 0 {
		t.Fatalf("the scenario did not run as planned:\n%s\n%s", logs, errs.String())
	}
	for _, text := range []struct{ name, s string }{{"log", logs}, {"errors", errs.String()}} {
		for _, s := range secrets {
			forms := [][]byte{s, []byte(hex.EncodeToString(s)), []byte(strings.ToUpper(hex.EncodeToString(s))),
				[]byte(base64.StdEncoding.EncodeToString(s))}
			for i := 0; i+8 <= len(s); i += 8 { // each 8-byte component, in hex
				forms = append(forms, []byte(hex.EncodeToString(s[i:i+8])), []byte(strings.ToUpper(hex.EncodeToString(s[i:i+8]))))
			}
			for _, f := range forms {
				if bytes.Contains([]byte(text.s), f) {
					t.Errorf("%s contains key material %q", text.name, f)
				}
			}
		}
	}
	t.Logf("checked %d secrets against %d bytes of log and %d of errors", len(secrets), len(logs), errs.Len())
}
