package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/license"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board/sim/pinpademu"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/padkeys"
	"github.com/posagent/posagent/keystore/softkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// Remote key loading through the TMS (keys.load with TR-31 blocks), on both backends: the
// software one (sealed in the agent's database) and the PIN pad's secure element (the
// emulator on a pseudo-terminal).

// The factory transport key of these tests: the PIN pad emulator's default, so both
// backends share it.
var testTransport = pinpademu.DefaultTransportKey

func randomKey(t testing.TB) []byte {
	k := make([]byte, 16)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func checkValue(t testing.TB, key []byte) string {
	v, err := kcv.TDES(key, 3)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(v))
}

func wrap(t testing.TB, kbpk []byte, usage string, mode byte, key []byte) string {
	b, err := tr31.Wrap(kbpk, tr31.Header{Version: 'B', Usage: usage, Algorithm: 'T', ModeOfUse: mode,
		KeyVersion: "00", Exportability: 'N'}, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keySet is a master key and working keys under it, as a key management system issues them.
type keySet struct{ kek, pik, mak []byte }

func newKeySet(t testing.TB) keySet {
	return keySet{kek: randomKey(t), pik: randomKey(t), mak: randomKey(t)}
}

// entries are the keys.load entries of the set: the KEK under the transport key, the working
// keys under the KEK.
func (s keySet) entries(t testing.TB) []map[string]any {
	return []map[string]any{
		{"role": "kek0", "block": wrap(t, testTransport, "K0", 'B', s.kek), "kcv": checkValue(t, s.kek)},
		{"role": "pik", "block": wrap(t, s.kek, "P0", 'E', s.pik)},
		{"role": "mak", "block": wrap(t, s.kek, "M3", 'C', s.mak)},
	}
}

func (s keySet) kcvs(t testing.TB) map[string]string {
	return map[string]string{"kek0": checkValue(t, s.kek), "pik": checkValue(t, s.pik), "mak": checkValue(t, s.mak)}
}

func (s keySet) secrets() [][]byte { return [][]byte{s.kek, s.pik, s.mak} }

func cborBody(t testing.TB, v any) []byte {
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// send sends a command and returns its final ack.
func (e *env) send(t testing.TB, kind string, body any) tmsproto.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := tmsproto.Command{Kind: kind}
	if body != nil {
		cmd.Body = cborBody(t, body)
	}
	sent, err := e.tms.Send(ctx, e.device, e.key, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return e.finalAck(sent.Match(), 0)
}

// statsKeys waits for a stats record newer than the nth and returns its keys by role.
func (e *env) statsKeys(t testing.TB, after int) (map[string]string, int) {
	t.Helper()
	waitFor(t, 20*time.Second, "stats", func() bool { return len(e.stream(tmsproto.StreamStats)) > after })
	all := e.stream(tmsproto.StreamStats)
	var s struct {
		Keys struct {
			Backend string `cbor:"backend"`
			Keys    []struct {
				Role string `cbor:"role"`
				KCV  string `cbor:"kcv"`
			} `cbor:"keys"`
		} `cbor:"keys"`
	}
	if err := looseUnmarshal(all[len(all)-1].Body, &s); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"backend": s.Keys.Backend}
	for _, k := range s.Keys.Keys {
		out[k.Role] = k.KCV
	}
	return out, len(all)
}

func sameKCVs(got, want map[string]string) bool {
	for role, v := range want {
		if got[role] != v {
			return false
		}
	}
	return true
}

// resultKCVs are the check values a keys.load result reports, by role.
func resultKCVs(t testing.TB, a tmsproto.Ack) map[string]string {
	var res struct {
		Keys []struct {
			Role string `cbor:"role"`
			KCV  string `cbor:"kcv"`
		} `cbor:"keys"`
	}
	if err := looseUnmarshal(a.Result, &res); err != nil {
		t.Fatalf("keys.load result: %v", err)
	}
	out := map[string]string{}
	for _, k := range res.Keys {
		out[k.Role] = k.KCV
	}
	return out
}

func softKeystoreConfig(t testing.TB, dir string) string {
	path := filepath.Join(dir, "transport.hex")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(testTransport)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("\n[keystore]\nbackend = \"software\"\ntransport_key_file = %q\n", path)
}

func pinpadConfig(t testing.TB) (string, *pinpademu.Emulator) {
	pad, err := pinpademu.New(pinpademu.Options{Dir: t.TempDir(), DefaultPIN: "123456", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pad.Close() })
	return fmt.Sprintf("\n[[devices]]\nname = \"pinpad\"\nkind = \"pinpad\"\n[devices.port]\npath = %q\nbaud = 115200\n", pad.Path()), pad
}

func TestKeysLoadSoftware(t *testing.T) {
	e := newEnv(t, "IT-KEYS-SOFT")
	e.startInProcessWith(softKeystoreConfig(t, t.TempDir()))
	testKeysLoad(t, e, "software")
}

func TestKeysLoadPINPad(t *testing.T) {
	e := newEnv(t, "IT-KEYS-PAD")
	cfg, _ := pinpadConfig(t)
	e.startInProcessWith(cfg)
	testKeysLoad(t, e, "pinpad")
}

// testKeysLoad loads a key set, then throws every kind of bad load at the terminal: each is
// refused with a reason and the keys in use stay as they were. Nothing secret is in the
// agent's log or in anything it sent.
func testKeysLoad(t *testing.T, e *env, backend string) {
	_, n := e.statsKeys(t, 0)
	// Without its master key the terminal asks for keys.
	waitFor(t, 20*time.Second, "keys.request", func() bool {
		for _, r := range e.stream(tmsproto.StreamReq) {
			if r.Kind == "keys.request" {
				return true
			}
		}
		return false
	})

	set := newKeySet(t)
	secrets := append([][]byte{testTransport}, set.secrets()...)
	a := e.send(t, "keys.load", map[string]any{"keys": set.entries(t)})
	if a.State != tmsproto.StateSucceeded {
		t.Fatalf("keys.load: %+v", a)
	}
	want := set.kcvs(t)
	if got := resultKCVs(t, a); !sameKCVs(got, want) {
		t.Fatalf("result check values %v, want %v", got, want)
	}
	got, n := e.statsKeys(t, n)
	if got["backend"] != backend || !sameKCVs(got, want) {
		t.Fatalf("stats keys %v, want %v on %s", got, want, backend)
	}

	other := newKeySet(t)
	secrets = append(secrets, other.secrets()...)
	good := set.entries(t)
	tampered := []byte(good[1]["block"].(string))
	tampered[len(tampered)-3] ^= 0x01 // a hex digit of the MAC, still a hex digit
	if tampered[len(tampered)-3] > 'F' || (tampered[len(tampered)-3] > '9' && tampered[len(tampered)-3] < 'A') {
		tampered[len(tampered)-3] = '0'
	}
	cases := []struct {
		name   string
		keys   []map[string]any
		state  tmsproto.State
		reason tmsproto.Reason
	}{
		{"tampered key block", []map[string]any{{"role": "pik", "block": string(tampered)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
		{"truncated key block", []map[string]any{{"role": "pik", "block": good[1]["block"].(string)[:40]}}, tmsproto.StateRejected, tmsproto.ReasonInvalidBody},
		{"working key under another master key", []map[string]any{{"role": "pik", "block": wrap(t, other.kek, "P0", 'E', other.pik)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
		{"block for another usage than the slot", []map[string]any{{"role": "mak", "block": wrap(t, set.kek, "P0", 'E', other.mak)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
		{"master key under a working key's usage", []map[string]any{{"role": "kek0", "block": wrap(t, testTransport, "P0", 'E', other.kek)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
		{"wrong check value", []map[string]any{{"role": "pik", "block": wrap(t, set.kek, "P0", 'E', other.pik), "kcv": checkValue(t, other.mak)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
		{"second key of a set bad", []map[string]any{{"role": "pik", "block": wrap(t, set.kek, "P0", 'E', other.pik)}, {"role": "mak", "block": string(tampered)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
		{"unknown role", []map[string]any{{"role": "kek42", "block": wrap(t, testTransport, "K0", 'B', other.kek)}}, tmsproto.StateFailed, tmsproto.ReasonExecFailed},
	}
	for _, tc := range cases {
		a := e.send(t, "keys.load", map[string]any{"keys": tc.keys})
		if a.State != tc.state || a.Reason != tc.reason || a.Message == "" {
			t.Errorf("%s: %s/%s %q, want %s/%s with a reason", tc.name, a.State, a.Reason, a.Message, tc.state, tc.reason)
		}
		e.send(t, "stats.now", nil)
		got, n = e.statsKeys(t, n)
		if !sameKCVs(got, want) {
			t.Errorf("%s: keys changed to %v", tc.name, got)
		}
	}

	// keys.erase zeroises; the stats say so.
	if a := e.send(t, "keys.erase", map[string]any{"scope": "loaded"}); a.State != tmsproto.StateSucceeded {
		t.Fatalf("keys.erase: %+v", a)
	}
	got, _ = e.statsKeys(t, n)
	if len(got) != 1 { // only "backend"
		t.Errorf("stats keys after erase: %v", got)
	}

	// No key, clear in any usual spelling, in the log or anything sent.
	var sent bytes.Buffer
	e.mu.Lock()
	for _, u := range e.uplinks {
		sent.Write(u.Raw)
	}
	e.mu.Unlock()
	for _, k := range secrets {
		for _, form := range keyForms(k) {
			if bytes.Contains([]byte(e.logs.String()), form) {
				t.Errorf("a key is in the agent's log (%d bytes form)", len(form))
			}
			if bytes.Contains(sent.Bytes(), form) {
				t.Errorf("a key is in what the agent sent (%d bytes form)", len(form))
			}
		}
	}
}

// TestKeysLoadPowerCuts kills the agent (SIGKILL) at random moments while it loads key sets,
// on both backends. After every cut, the keys in use — the store's map as the next start
// reads it — are the previous set or the new one as a whole, never a mix; once restarted,
// the agent finishes the interrupted load.
func TestKeysLoadPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("kills agent processes; skipped with -short")
	}
	for _, backend := range []string{"software", "pinpad"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, "IT-KEYS-CUT-"+strings.ToUpper(backend[:3]))
			var extra string
			if backend == "software" {
				extra = softKeystoreConfig(t, t.TempDir())
			} else {
				extra, _ = pinpadConfig(t)
			}
			cfg := e.configFile(extra)
			t.Setenv(envDebug, "1") // the children log everything: the crash output below includes it
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 3))
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			c := e.startChild(cfg, 0)
			waitFor(t, 20*time.Second, "agent online", func() bool { return len(e.stream(tmsproto.StreamStats)) > 0 })
			prev := map[string]string{} // no keys yet
			secrets := [][]byte{testTransport}
			const rounds = 6
			for i := 0; i < rounds; i++ {
				set := newKeySet(t)
				secrets = append(secrets, set.secrets()...)
				s, err := e.tms.Send(ctx, e.device, e.key, tmsproto.Command{Kind: "keys.load",
					Body: cborBody(t, map[string]any{"keys": set.entries(t)})})
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
				c.kill()
				got := e.keysInUse(t, backend)
				next := set.kcvs(t)
				if !sameSet(got, prev) && !sameSet(got, next) {
					t.Fatalf("round %d: keys in use %v are neither the old set %v nor the new %v", i, got, prev, next)
				}
				before := e.onlineCount()
				c = e.startChild(cfg, 0)
				waitFor(t, 20*time.Second, "agent online again", func() bool { return e.onlineCount() > before })
				if a := e.finalAck(s.Match(), 0); a.State != tmsproto.StateSucceeded {
					t.Fatalf("round %d: keys.load after the restart: %+v", i, a)
				}
				prev = next
			}
			// A crash dump (SIGQUIT: every goroutine's stack) holds no key either.
			_ = c.cmd.Process.Signal(syscall.SIGQUIT)
			<-c.done
			c.done <- nil
			dump := c.stderr.String()
			if !strings.Contains(dump, "goroutine ") {
				t.Fatalf("no crash dump on stderr:\n%s", dump)
			}
			for _, k := range secrets {
				for _, form := range keyForms(k) {
					if strings.Contains(dump, string(form)) {
						t.Errorf("a key is in the crash output (%d-byte form)", len(form))
					}
				}
			}
			if got := e.keysInUse(t, backend); !sameSet(got, prev) {
				t.Errorf("at the end: %v, want %v", got, prev)
			}
		})
	}
}

// keyForms are the spellings of a key a leak would use: raw, hex both cases, base64, and
// each 8-byte half in hex (how a DES key is often printed).
func keyForms(k []byte) [][]byte {
	h := hex.EncodeToString(k)
	forms := [][]byte{k, []byte(h), []byte(strings.ToUpper(h)), []byte(base64.StdEncoding.EncodeToString(k))}
	for i := 0; i+8 <= len(k); i += 8 {
		half := hex.EncodeToString(k[i : i+8])
		forms = append(forms, []byte(half), []byte(strings.ToUpper(half)))
	}
	return forms
}

// sameSet: the same roles with the same check values.
func sameSet(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	return sameKCVs(a, b)
}

// keysInUse opens the stopped agent's database as the next start would and returns the
// check values of its key map by role. The software backend is checked against its sealed
// records (a map entry whose key is not there would be dropped); for the PIN pad the map is
// read as it is.
func (e *env) keysInUse(t *testing.T, backend string) map[string]string {
	t.Helper()
	dir := filepath.Join(e.dir, "data")
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	commit := store.NewCommitter(db)
	defer commit.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var b keystore.Backend
	if backend == "software" {
		b, err = softkeys.Open(softkeys.Options{DB: db, Commit: commit, Root: softkeys.FileRootKey(filepath.Join(dir, "keystore.root")), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
	} else {
		b = padkeys.New(func() *pinpad.Client { return nil }, nil)
	}
	ks, err := keystore.Open(keystore.Options{DB: db, Commit: commit, Backend: b, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if backend == "software" {
		if err := ks.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]string{}
	for _, en := range ks.Entries() {
		out[string(en.Role)] = en.KCV
	}
	return out
}

// provisionPayments does what the TMS does before a terminal pays: the master key (kek0,
// TR-31 under the transport key) into the key store, a payments licence signed with the
// release key "rel-1", then the terminal configuration (an encoded document).
func (e *env) provisionPayments(t testing.TB, kek []byte, relKey ed25519.PrivateKey, termConfig []byte) {
	t.Helper()
	if a := e.send(t, "keys.load", map[string]any{"keys": []map[string]any{
		{"role": "kek0", "block": wrap(t, testTransport, "K0", 'B', kek), "kcv": checkValue(t, kek)}}}); a.State != tmsproto.StateSucceeded {
		t.Fatalf("keys.load: %+v", a)
	}
	now := time.Now()
	lic, err := license.Sign(relKey, "rel-1", license.License{V: license.Version, ID: "L-" + e.device, Serial: e.device,
		Platform: license.CurrentPlatform(), Features: []string{"payments"}, Issued: now.Unix(),
		NotBefore: now.Add(-time.Minute).Unix(), Expires: now.Add(24 * time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if a := e.send(t, "license.put", map[string]any{"license": lic}); a.State != tmsproto.StateSucceeded {
		t.Fatalf("license.put: %+v", a)
	}
	if a := e.send(t, "config.apply", cborRaw(termConfig)); a.State != tmsproto.StateSucceeded {
		t.Fatalf("config.apply: %+v", a)
	}
}
