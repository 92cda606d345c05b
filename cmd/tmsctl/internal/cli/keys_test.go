package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/softkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// The transport key of these tests: the widely published TDES test key (KCV 08D7B4), the PIN
// pad emulator's default.
const testTransportHex = "0123456789ABCDEFFEDCBA9876543210"

func writeText(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "aes:"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tdesKCV(t *testing.T, key []byte) string {
	t.Helper()
	v, err := kcv.TDES(key, 3)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(v))
}

func loadKeyFile(t *testing.T, path string) keyFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f keyFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, raw)
	}
	return f
}

// TestKeysWrapRoundTrip: wrap → key file → tr31.Unwrap with the same KBPK gives the key, the
// header the terminal accepts and the file's KCV; the file loads into a real key store on the
// software backend holding that transport key.
func TestKeysWrapRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	transport := writeText(t, dir, "transport.hex", testTransportHex+"\n")
	file := filepath.Join(dir, "T-1.keys.json")
	kekClear := filepath.Join(dir, "kek1.hex")

	r := tmsctl(ctx, "", "keys", "wrap", "--kbpk-file", transport, "--role", "kek1", "--random", "--save-clear", kekClear,
		"--device", "T-1", "--out", file)
	if r.code != ExitOK {
		t.Fatalf("wrap kek1: %d %s", r.code, r.stderr.String())
	}
	st, err := os.Stat(kekClear)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("--save-clear file: %v %v", st, err)
	}
	kekText, _ := os.ReadFile(kekClear)
	kek := mustHex(t, string(kekText))
	if len(kek) != 16 {
		t.Fatalf("random KEK of %d bytes", len(kek))
	}
	kekHex := strings.ToUpper(hex.EncodeToString(kek))
	if out := r.stdout.String() + r.stderr.String(); strings.Contains(strings.ToUpper(out), kekHex) {
		t.Errorf("the random key was printed:\n%s", out)
	}
	if want := "kek1 " + tdesKCV(t, kek) + "\n"; r.stdout.String() != want {
		t.Errorf("stdout %q, want %q", r.stdout.String(), want)
	}

	pik := mustHex(t, "0123456789abcdef0123456789ABCDEF")
	mak := mustHex(t, "00112233445566778899AABBCCDDEEFF0011223344556677")
	tdk := mustHex(t, "FEDCBA9876543210FEDCBA9876543210")
	pikFile := writeText(t, dir, "pik.hex", hex.EncodeToString(pik)+"\n")
	for _, args := range [][]string{
		{"--role", "pik", "--key-file", pikFile},
		{"--role", "mak", "--key", strings.ToLower(hex.EncodeToString(mak))},
		{"--role", "tdk", "--key", hex.EncodeToString(tdk), "--version", "B"},
	} {
		r := tmsctl(ctx, "", append([]string{"keys", "wrap", "--kbpk-file", kekClear, "--append", file}, args...)...)
		if r.code != ExitOK {
			t.Fatalf("wrap %v: %d %s", args, r.code, r.stderr.String())
		}
		for _, k := range [][]byte{pik, mak, tdk} {
			if out := strings.ToUpper(r.stdout.String() + r.stderr.String()); strings.Contains(out, strings.ToUpper(hex.EncodeToString(k))) {
				t.Errorf("wrap %v printed a key:\n%s", args, out)
			}
		}
	}

	f := loadKeyFile(t, file)
	if f.Device != "T-1" || f.KEK == nil || *f.KEK != 1 || len(f.Keys) != 4 {
		t.Fatalf("key file %+v", f)
	}
	want := []struct {
		role, usage string
		mode        byte
		kbpk, key   []byte
	}{
		{"kek1", "K0", 'B', mustHex(t, testTransportHex), kek},
		{"pik", "P0", 'E', kek, pik},
		{"mak", "M3", 'C', kek, mak},
		{"tdk", "D0", 'B', kek, tdk},
	}
	for i, w := range want {
		e := f.Keys[i]
		h, key, err := tr31.Unwrap(w.kbpk, e.Block)
		if err != nil {
			t.Fatalf("%s: unwrap: %v", w.role, err)
		}
		if e.Role != w.role || h.Version != 'B' || h.Usage != w.usage || h.Algorithm != 'T' || h.ModeOfUse != w.mode ||
			h.KeyVersion != "00" || h.Exportability != 'N' {
			t.Errorf("%s: entry %s, header %+v", w.role, e.Role, h)
		}
		if hex.EncodeToString(key) != hex.EncodeToString(w.key) {
			t.Errorf("%s: the block holds another key", w.role)
		}
		if e.KCV != tdesKCV(t, w.key) {
			t.Errorf("%s: kcv %s, key has %s", w.role, e.KCV, tdesKCV(t, w.key))
		}
	}

	// The file as the terminal takes it: a real key store on the software backend.
	ks := terminalKeyStore(t, mustHex(t, testTransportHex))
	items := make([]keystore.Item, len(f.Keys))
	for i, e := range f.Keys {
		items[i] = keystore.Item{Role: keystore.Role(e.Role), Block: e.Block, KCV: e.KCV}
	}
	loaded, err := ks.Load(ctx, keystore.Load{Items: items, KEK: *f.KEK, Command: "c", Source: "tr31"})
	if err != nil {
		t.Fatalf("the software backend refuses the file: %v", err)
	}
	for i, e := range loaded {
		if string(e.Role) != f.Keys[i].Role || e.KCV != f.Keys[i].KCV {
			t.Errorf("loaded %s %s, file %s %s", e.Role, e.KCV, f.Keys[i].Role, f.Keys[i].KCV)
		}
	}
}

// TestKeysWrapAES: an AES transport key makes version D blocks; an AES master key is written
// with algorithm A and its CMAC-based KCV, and its working keys are TDES in D blocks.
func TestKeysWrapAES(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	transportHex := "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	transport := writeText(t, dir, "transport.hex", "aes:"+transportHex)
	file := filepath.Join(dir, "k.json")
	kekFile := filepath.Join(dir, "kek0.hex")
	if r := tmsctl(ctx, "", "keys", "wrap", "--kbpk-file", transport, "--role", "kek0", "--random", "--alg", "aes", "--length", "32",
		"--save-clear", kekFile, "--out", file); r.code != ExitOK {
		t.Fatalf("wrap: %d %s", r.code, r.stderr.String())
	}
	if r := tmsctl(ctx, "", "keys", "wrap", "--kbpk-file", kekFile, "--role", "mak", "--random", "--append", file); r.code != ExitOK {
		t.Fatalf("wrap mak: %d %s", r.code, r.stderr.String())
	}
	kekText, _ := os.ReadFile(kekFile)
	if !strings.HasPrefix(string(kekText), "aes:") {
		t.Fatalf("--save-clear of an AES key lacks aes:")
	}
	kek := mustHex(t, string(kekText))
	f := loadKeyFile(t, file)
	h, key, err := tr31.Unwrap(mustHex(t, transportHex), f.Keys[0].Block)
	if err != nil || h.Version != 'D' || h.Algorithm != 'A' || h.Usage != "K0" || hex.EncodeToString(key) != hex.EncodeToString(kek) {
		t.Fatalf("kek0 block: %+v %v", h, err)
	}
	cv, _ := kcv.AES(kek, 3)
	if f.Keys[0].KCV != strings.ToUpper(hex.EncodeToString(cv)) {
		t.Errorf("AES kcv %s, want %X", f.Keys[0].KCV, cv)
	}
	h, key, err = tr31.Unwrap(kek, f.Keys[1].Block)
	if err != nil || h.Version != 'D' || h.Algorithm != 'T' || h.Usage != "M3" || f.Keys[1].KCV != tdesKCV(t, key) {
		t.Errorf("mak block: %+v %v", h, err)
	}
	if f.KEK == nil || *f.KEK != 0 {
		t.Errorf("kek %v, want 0 (the file's master key wraps the MAK)", f.KEK)
	}
}

// terminalKeyStore is the terminal's key store on a real software backend holding the
// transport key.
func terminalKeyStore(t *testing.T, transport []byte) *keystore.Store {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	commit := store.NewCommitter(db)
	t.Cleanup(func() { commit.Close(); db.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	soft, err := softkeys.Open(softkeys.Options{DB: db, Commit: commit, Root: softkeys.FileRootKey(filepath.Join(dir, "root")), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := soft.InjectTransport(context.Background(), keystore.TDES, transport, false); err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(keystore.Options{DB: db, Commit: commit, Backend: soft, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// loadBody is the keys.load body as the agent decodes it (agent/keys.go), strictly: an
// unknown field such as the file's "device" would be refused.
type loadBody struct {
	Keys []struct {
		Role  string `cbor:"role"`
		Block string `cbor:"block"`
		KCV   string `cbor:"kcv,omitempty"`
	} `cbor:"keys"`
	KEK *int `cbor:"kek,omitempty"`
}

// keysTerminal answers keys.load like the agent: decodes the body strictly, loads it into a
// real key store and reports per key role, KCV, algorithm and slot. tamper, when set, changes
// the reported results.
func keysTerminal(t *testing.T, ks *keystore.Store, bodies chan<- loadBody, tamper func([]map[string]any)) func(*tmsproto.Command) []tmsproto.Ack {
	return func(cmd *tmsproto.Command) []tmsproto.Ack {
		if cmd.Kind != "keys.load" {
			return []tmsproto.Ack{{State: tmsproto.StateRejected, Reason: tmsproto.ReasonUnknownKind}}
		}
		var b loadBody
		if err := tmsproto.Unmarshal(cmd.Body, &b); err != nil {
			return []tmsproto.Ack{{State: tmsproto.StateRejected, Reason: tmsproto.ReasonInvalidBody, Message: err.Error()}}
		}
		bodies <- b
		l := keystore.Load{KEK: -1, Command: cmd.ID, Source: "tr31"}
		if b.KEK != nil {
			l.KEK = *b.KEK
		}
		for _, k := range b.Keys {
			l.Items = append(l.Items, keystore.Item{Role: keystore.Role(k.Role), Block: k.Block, KCV: k.KCV})
		}
		loaded, err := ks.Load(context.Background(), l)
		if err != nil {
			return []tmsproto.Ack{{State: tmsproto.StateAccepted}, {State: tmsproto.StateFailed, Reason: tmsproto.ReasonExecFailed, Message: err.Error()}}
		}
		out := make([]map[string]any, len(loaded))
		for i, e := range loaded {
			out[i] = map[string]any{"role": string(e.Role), "kcv": e.KCV, "alg": e.Algorithm.String(), "slot": e.Slot}
		}
		if tamper != nil {
			tamper(out)
		}
		res, err := tmsproto.Marshal(map[string]any{"keys": out})
		if err != nil {
			t.Error(err)
		}
		return []tmsproto.Ack{{State: tmsproto.StateAccepted}, {State: tmsproto.StateRunning}, {State: tmsproto.StateSucceeded, Result: res}}
	}
}

// labKeyFile writes, with tmsctl keys wrap, a file for T-1: kek0 under the test transport key
// and a PIK and MAK under it. It returns the file and the clear KEK file.
func labKeyFile(ctx context.Context, t *testing.T, dir string) (file, kekFile string) {
	t.Helper()
	transport := writeText(t, dir, "transport.hex", testTransportHex)
	file, kekFile = filepath.Join(dir, "T-1.keys.json"), filepath.Join(dir, "kek0.hex")
	for _, args := range [][]string{
		{"--kbpk-file", transport, "--role", "kek0", "--random", "--save-clear", kekFile, "--device", "T-1", "--out", file},
		{"--kbpk-file", kekFile, "--role", "pik", "--random", "--append", file},
		{"--kbpk-file", kekFile, "--role", "mak", "--random", "--append", file},
	} {
		if r := tmsctl(ctx, "", append([]string{"keys", "wrap"}, args...)...); r.code != ExitOK {
			t.Fatalf("wrap %v: %d %s", args, r.code, r.stderr.String())
		}
	}
	return file, kekFile
}

// TestKeysLoad: the file's entries reach the terminal field by field, unchanged, without the
// device; the terminal loads them into a real key store; tmsctl prints the KCVs it reports,
// checked against the file.
func TestKeysLoad(t *testing.T) {
	bodies := make(chan loadBody, 4)
	ks := terminalKeyStore(t, mustHex(t, testTransportHex))
	ctx, url, signKey, agent := sendFixture(t, keysTerminal(t, ks, bodies, nil))
	file, _ := labKeyFile(ctx, t, t.TempDir())
	f := loadKeyFile(t, file)

	r := tmsctl(ctx, "", "keys", "load", "--broker", url, "--device", "T-1", "--sign-key", signKey, "--file", file)
	if r.code != ExitOK {
		t.Fatalf("load: %d\nstdout %s\nstderr %s", r.code, r.stdout.String(), r.stderr.String())
	}
	cmd := <-agent.got
	b := <-bodies
	if cmd.Kind != "keys.load" || len(b.Keys) != len(f.Keys) || b.KEK == nil || *b.KEK != *f.KEK {
		t.Fatalf("terminal got %s %+v, file %+v", cmd.Kind, b, f)
	}
	for i, k := range b.Keys {
		if k.Role != f.Keys[i].Role || k.Block != f.Keys[i].Block || k.KCV != f.Keys[i].KCV {
			t.Errorf("keys[%d]: terminal got %+v, file has %+v", i, k, f.Keys[i])
		}
	}
	out := r.stdout.String()
	for _, e := range f.Keys {
		if !strings.Contains(out, e.Role) || !strings.Contains(out, e.KCV) {
			t.Errorf("stdout lacks %s %s:\n%s", e.Role, e.KCV, out)
		}
	}
	if strings.Count(out, "  ok\n") != 3 || !strings.Contains(r.stderr.String(), "sent keys.load (kek0, pik, mak) to T-1") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, r.stderr.String())
	}
	if got := ks.Entries(); len(got) != 3 {
		t.Errorf("terminal key store %+v", got)
	}

	// Working keys alone, under the master key now on the terminal (the file says kek 0).
	dir := t.TempDir()
	kekFile := filepath.Join(filepath.Dir(file), "kek0.hex")
	tdkFile := filepath.Join(dir, "tdk.json")
	if r := tmsctl(ctx, "", "keys", "wrap", "--kbpk-file", kekFile, "--role", "tdk", "--random", "--kek", "0", "--out", tdkFile); r.code != ExitOK {
		t.Fatal(r.stderr.String())
	}
	if r := tmsctl(ctx, "", "keys", "load", "--broker", url, "--device", "T-1", "--sign-key", signKey, "--file", tdkFile); r.code != ExitOK {
		t.Fatalf("load tdk: %d %s %s", r.code, r.stdout.String(), r.stderr.String())
	}
	<-agent.got
	if b := <-bodies; len(b.Keys) != 1 || b.Keys[0].Role != "tdk" || b.KEK == nil || *b.KEK != 0 {
		t.Errorf("tdk body %+v", b)
	}

	// A file whose block the terminal refuses (a MAK wrapped under another key): failed, the
	// key set unchanged.
	other := writeText(t, dir, "other.hex", "11111111111111112222222222222222")
	bad := filepath.Join(dir, "bad.json")
	if r := tmsctl(ctx, "", "keys", "wrap", "--kbpk-file", other, "--role", "mak", "--random", "--kek", "0", "--out", bad); r.code != ExitOK {
		t.Fatal(r.stderr.String())
	}
	r = tmsctl(ctx, "", "keys", "load", "--broker", url, "--device", "T-1", "--sign-key", signKey, "--file", bad)
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), `"state":"failed"`) || !strings.Contains(r.stderr.String(), "key block rejected") {
		t.Errorf("refused block: %d\nstdout %s\nstderr %s", r.code, r.stdout.String(), r.stderr.String())
	}
	<-agent.got
	<-bodies
	if got := ks.Entries(); len(got) != 4 {
		t.Errorf("after a refused load the store has %d keys, want 4", len(got))
	}
}

// TestKeysLoadKCVMismatch: the terminal reports a KCV other than the file's: tmsctl says so
// and fails.
func TestKeysLoadKCVMismatch(t *testing.T) {
	bodies := make(chan loadBody, 4)
	ks := terminalKeyStore(t, mustHex(t, testTransportHex))
	ctx, url, signKey, agent := sendFixture(t, keysTerminal(t, ks, bodies, func(out []map[string]any) {
		out[1]["kcv"] = "000000"
	}))
	file, _ := labKeyFile(ctx, t, t.TempDir())
	r := tmsctl(ctx, "", "keys", "load", "--broker", url, "--device", "T-1", "--sign-key", signKey, "--file", file)
	<-agent.got
	<-bodies
	if r.code != ExitFailed || !strings.Contains(r.stdout.String(), "MISMATCH: the file says") || !strings.Contains(r.stderr.String(), "1 key(s)") {
		t.Errorf("%d\nstdout %s\nstderr %s", r.code, r.stdout.String(), r.stderr.String())
	}
}

// TestKeysBadInputs: bad hex, wrong role, KBPK of the wrong length, a key file that does not
// fit: refused with a clear error, nothing written, nothing sent.
func TestKeysBadInputs(t *testing.T) {
	ctx, url, signKey, agent := sendFixture(t, func(*tmsproto.Command) []tmsproto.Ack {
		return []tmsproto.Ack{{State: tmsproto.StateSucceeded}}
	})
	dir := t.TempDir()
	file, kekFile := labKeyFile(ctx, t, dir)
	transport := filepath.Join(dir, "transport.hex")
	short := writeText(t, dir, "short.hex", "0123456789ABCDEF0123")
	notHex := writeText(t, dir, "nothex.hex", "secretsecretsecretsecretsecret00")
	out := filepath.Join(dir, "new.json")
	secret := "0123456789ABCDEFFEDCBA987654ZZZZ"

	wrap := func(args ...string) []string { return append([]string{"keys", "wrap"}, args...) }
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"bad hex key":       {wrap("--kbpk-file", transport, "--role", "pik", "--key", secret, "--out", out), "--key is not hex"},
		"short key":         {wrap("--kbpk-file", transport, "--role", "pik", "--key", "0011223344556677", "--out", out), "is 8 bytes"},
		"wrong role":        {wrap("--kbpk-file", transport, "--role", "bdk", "--random", "--out", out), `--role "bdk": want kek0..kek9`},
		"kek10":             {wrap("--kbpk-file", transport, "--role", "kek10", "--random", "--out", out), "want kek0..kek9"},
		"KBPK length":       {wrap("--kbpk-file", short, "--role", "kek0", "--random", "--out", out), "is 10 bytes; a TDES key is 16 or 24"},
		"KBPK not hex":      {wrap("--kbpk-file", notHex, "--role", "kek0", "--random", "--out", out), "is not hex"},
		"KBPK missing":      {wrap("--kbpk-file", filepath.Join(dir, "nope"), "--role", "kek0", "--random", "--out", out), "no such file"},
		"two sources":       {wrap("--kbpk-file", transport, "--role", "pik", "--random", "--key", testTransportHex, "--out", out), "exactly one of"},
		"no source":         {wrap("--kbpk-file", transport, "--role", "pik", "--out", out), "exactly one of"},
		"key as argument":   {wrap("--kbpk-file", transport, "--role", "pik", testTransportHex), "unexpected argument"},
		"AES working key":   {wrap("--kbpk-file", transport, "--role", "pik", "--random", "--alg", "aes", "--out", out), "only a master key"},
		"AES under TDES":    {wrap("--kbpk-file", transport, "--role", "kek0", "--random", "--alg", "aes", "--out", out), "only delivered under an AES KBPK"},
		"version B, AES":    {wrap("--kbpk-file", writeText(t, dir, "a.hex", "aes:"+testTransportHex), "--version", "B", "--role", "kek0", "--random", "--out", out), "version B needs a TDES"},
		"save-clear, --key": {wrap("--kbpk-file", transport, "--role", "pik", "--key", testTransportHex, "--save-clear", out+".k", "--out", out), "--random only"},
		"overwrite":         {wrap("--kbpk-file", transport, "--role", "kek1", "--random", "--out", file), "exists"},
		"role twice":        {wrap("--kbpk-file", kekFile, "--role", "pik", "--random", "--append", file), "already has pik"},
		"wrong KBPK":        {wrap("--kbpk-file", transport, "--role", "tdk", "--random", "--append", file), "is not the file's kek0"},
		"other device":      {wrap("--kbpk-file", kekFile, "--role", "tdk", "--random", "--append", file, "--device", "T-2"), "is for device T-1, not T-2"},
	} {
		r := tmsctl(ctx, "", c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr.String(), c.want) {
			t.Errorf("%s: status %d, stderr %q lacks %q", name, r.code, r.stderr.String(), c.want)
		}
		if strings.Contains(r.stderr.String()+r.stdout.String(), secret) || strings.Contains(r.stderr.String()+r.stdout.String(), "secretsecret") {
			t.Errorf("%s: a key was echoed: %s", name, r.stderr.String())
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused wrap wrote %s", out)
	}
	if f := loadKeyFile(t, file); len(f.Keys) != 3 {
		t.Errorf("a refused append changed the file: %d keys", len(f.Keys))
	}

	// Key files that do not fit: refused before anything is sent.
	good := loadKeyFile(t, file)
	variant := func(name string, edit func(m map[string]any)) string {
		raw, _ := json.Marshal(good)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		raw, _ = json.Marshal(m)
		return writeText(t, dir, name, string(raw))
	}
	entry := func(m map[string]any, i int) map[string]any { return m["keys"].([]any)[i].(map[string]any) }
	wrongKCV := variant("kcv.json", func(m map[string]any) { entry(m, 0)["kcv"] = "123456" })
	load := func(file string, extra ...string) []string {
		return append([]string{"keys", "load", "--broker", url, "--device", "T-1", "--sign-key", signKey, "--file", file}, extra...)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"kcv does not match": {load(wrongKCV, "--check-kbpk", transport), "kek0: the file says kcv 123456, the key in the block has"},
		"working kcv":        {load(variant("pikkcv.json", func(m map[string]any) { entry(m, 1)["kcv"] = "ABCDEF" }), "--check-kbpk", transport), "pik: the file says kcv ABCDEF"},
		"wrong transport":    {load(file, "--check-kbpk", kekFile), "kek0: tr31: key block MAC does not verify"},
		"kcv not hex":        {load(variant("kcvhex.json", func(m map[string]any) { entry(m, 0)["kcv"] = "XYZXYZ" })), `kcv "XYZXYZ" is not 6 hex digits`},
		"other device":       {load(variant("dev.json", func(m map[string]any) { m["device"] = "T-9" })), "is for device T-9, not T-1: nothing sent"},
		"unknown role":       {load(variant("role.json", func(m map[string]any) { entry(m, 1)["role"] = "bdk" })), `role "bdk" is not`},
		"role vs block":      {load(variant("usage.json", func(m map[string]any) { entry(m, 1)["role"] = "tdk" })), "key usage P0, want D0"},
		"bad block":          {load(variant("block.json", func(m map[string]any) { entry(m, 2)["block"] = "B0080M3TC00N0000" })), "tr31: malformed"},
		"kek out of range":   {load(variant("kek.json", func(m map[string]any) { m["kek"] = 10 })), "kek: 10 is outside 0..9"},
		"unknown field":      {load(variant("field.json", func(m map[string]any) { m["keyz"] = 1 })), `unknown field "keyz"`},
		"no keys":            {load(variant("empty.json", func(m map[string]any) { m["keys"] = []any{} })), "0 keys (1..13)"},
		"no file":            {[]string{"keys", "load", "--device", "T-1", "--sign-key", signKey}, "--file is required"},
	} {
		r := tmsctl(ctx, "", c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr.String(), c.want) {
			t.Errorf("%s: status %d, stderr %q lacks %q", name, r.code, r.stderr.String(), c.want)
		}
	}
	// The good file passes the lab check (and is then sent).
	if r := tmsctl(ctx, "", load(file, "--check-kbpk", transport)...); r.code == ExitUsage {
		t.Errorf("good file refused: %s", r.stderr.String())
	}
	select {
	case cmd := <-agent.got:
		if cmd.Kind != "keys.load" {
			t.Errorf("sent %s", cmd.Kind)
		}
	case <-ctx.Done():
		t.Fatal("the good file was not sent")
	}
	select {
	case cmd := <-agent.got:
		t.Errorf("a refused file was sent: %s %s", cmd.Kind, cmd.ID)
	default:
	}
	if r := tmsctl(ctx, "", "keys", "frob"); r.code != ExitUsage {
		t.Errorf("unknown subcommand: %d", r.code)
	}
	if r := tmsctl(ctx, "", "keys", "wrap", "-h"); r.code != ExitOK || !strings.Contains(r.stderr.String(), "K0 mode B") {
		t.Errorf("keys wrap -h: %d", r.code)
	}
}

// statsRecord is a real stats body, encoded with tmsproto as the agent does.
func statsRecord(keys *agent.KeysInfo) agent.Stats {
	return agent.Stats{Board: "sim", Device: board.Identity{Serial: "T-1"}, Keys: keys}
}

// TestKeysStatus: the keys section of a real stats record, after stats.now or the next
// periodic record.
func TestKeysStatus(t *testing.T) {
	var term *fakeAgent
	keys := &agent.KeysInfo{Backend: "software", ActiveKEK: 1, Keys: []agent.KeyStateInfo{
		{Role: "pik", KCV: "2C8B6C", Alg: "tdes", At: 1_700_000_100, Command: "c-2", Source: "tr31", Parent: "kek1"},
		{Role: "kek1", KCV: "C39987", Alg: "tdes", At: 1_700_000_000, Command: "c-1", Source: "tr31"},
		{Role: "mak", KCV: "FB0975", Alg: "tdes", At: 1_600_000_000, Command: "c-0", Source: "tr31", Parent: "kek0"},
	}}
	ctx, url, signKey, term0 := sendFixture(t, func(cmd *tmsproto.Command) []tmsproto.Ack {
		if cmd.Kind != "stats.now" {
			return []tmsproto.Ack{{State: tmsproto.StateRejected, Reason: tmsproto.ReasonUnknownKind}}
		}
		// An older periodic record first: not the one asked for.
		term.publishSeq(tmsproto.StreamStats, 6, statsRecord(&agent.KeysInfo{Backend: "software", Keys: []agent.KeyStateInfo{}}))
		term.publishSeq(tmsproto.StreamStats, 7, statsRecord(keys))
		res, _ := tmsproto.Marshal(map[string]any{"statsSeq": 7})
		return []tmsproto.Ack{{State: tmsproto.StateAccepted}, {State: tmsproto.StateSucceeded, Result: res}}
	})
	term = term0

	r := tmsctl(ctx, "", "keys", "status", "--broker", url, "--device", "T-1", "--sign-key", signKey)
	if r.code != ExitOK {
		t.Fatalf("status: %d %s", r.code, r.stderr.String())
	}
	out := r.stdout.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "T-1: keys on the software backend, active master key kek1 (stats seq 7 of 2023-11-14T22:13:20Z)") ||
		!strings.HasPrefix(lines[1], "ROLE") || !strings.HasPrefix(lines[2], "kek1") || !strings.HasPrefix(lines[3], "pik") || !strings.HasPrefix(lines[4], "mak") {
		t.Fatalf("status output:\n%s", out)
	}
	for _, want := range []string{
		"kek1  C39987  tdes  -      2023-11-14T22:13:20Z  tr31    c-1",
		"pik   2C8B6C  tdes  kek1   2023-11-14T22:15:00Z  tr31    c-2",
		"warning: mak came under kek0, not the active kek1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "is not loaded") {
		t.Errorf("warned of a missing master key:\n%s", out)
	}
	<-term.got

	// Without a signing key: the next periodic record, as JSON.
	r = &run{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.code = Run(ctx, testEnv(r, "", false, map[string]string{"TMS_BROKER": url}),
			[]string{"keys", "status", "--device", "T-1", "--json"}, Commands())
	}()
	waitFor(ctx, t, "the status to wait", func() bool { return strings.Contains(r.stderr.String(), "waiting up to") })
	term.publishSeq(tmsproto.StreamStats, 8, statsRecord(&agent.KeysInfo{Backend: "pinpad", ActiveKEK: 2, Keys: []agent.KeyStateInfo{}}))
	<-done
	var got keysStats
	if err := json.Unmarshal([]byte(r.stdout.String()), &got); r.code != ExitOK || err != nil || got.Backend != "pinpad" || got.ActiveKEK != 2 || len(got.Keys) != 0 {
		t.Errorf("--json: %d %v %q %s", r.code, err, r.stdout.String(), r.stderr.String())
	}

	// The human form of an empty store warns that the active master key is missing.
	var b strings.Builder
	printKeysStatus(&b, "T-1", 8, 1_700_000_000_000, &got)
	if !strings.Contains(b.String(), "no keys loaded") || !strings.Contains(b.String(), "warning: the active master key kek2 is not loaded") {
		t.Errorf("empty status:\n%s", b.String())
	}

	// A record without a keys section, and no record at all.
	r = &run{}
	done = make(chan struct{})
	go func() {
		defer close(done)
		r.code = Run(ctx, testEnv(r, "", false, nil), []string{"keys", "status", "--broker", url, "--device", "T-1"}, Commands())
	}()
	waitFor(ctx, t, "the status to wait", func() bool { return strings.Contains(r.stderr.String(), "waiting up to") })
	term.publishSeq(tmsproto.StreamStats, 9, statsRecord(nil))
	<-done
	if r.code != ExitFailed || !strings.Contains(r.stderr.String(), "no keys section") {
		t.Errorf("no keys section: %d %s", r.code, r.stderr.String())
	}
	if r := tmsctl(ctx, "", "keys", "status", "--broker", url, "--device", "T-1", "--wait", "300ms"); r.code != ExitTimeout || !strings.Contains(r.stderr.String(), "no stats from T-1") {
		t.Errorf("no stats: %d %s", r.code, r.stderr.String())
	}
	if r := tmsctl(ctx, "", "keys", "status", "--broker", url); r.code != ExitUsage {
		t.Errorf("no device: %d", r.code)
	}
}
