package softkeys

import (
	"bytes"
	"context"
	"crypto/des"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/mac"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envPowerCut); dir != "" {
		os.Exit(powerCutChild(dir))
	}
	os.Exit(m.Run())
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// The test keys of docs/pinpad-protocol.md, and a few more.
var (
	transportKey = unhex("0123456789ABCDEF FEDCBA9876543210") // KCV 08D7B4
	kekKey       = unhex("89ABCDEF01234567 76543210FEDCBA98") // KCV EB7A8D
	pikKey       = unhex("F1E2D3C4B5A69788 796A5B4C3D2E1F00") // KCV E99443
	pik2Key      = unhex("1F2E3D4C5B6A7988 97A6B5C4D3E2F101")
	makKey       = unhex("0F1E2D3C4B5A6978 8796A5B4C3D2E1F0")
	mak8Key      = unhex("A1B2C3D4E5F60718")
	tdkKey       = unhex("2233445566778899 AABBCCDDEEFF0011 1021324354657687")
	aesTransport = unhex("000102030405060708090A0B0C0D0E0F 101112131415161718191A1B1C1D1E1F")
	aesKEK       = unhex("88776655443322110011223344556677")
)

// lockedBuffer is a bytes.Buffer for a logger written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	t    *testing.T
	dir  string
	root string // root key file
	db   *store.DB
	c    *store.Committer
	b    *Backend
	log  *lockedBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, root: filepath.Join(dir, "root.key"), log: &lockedBuffer{}}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.c = db, store.NewCommitter(db)
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.b, err = Open(Options{DB: e.db, Commit: e.c, Root: FileRootKey(e.root), MaxSlot: 15, Logger: log})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) close() {
	if e.db == nil {
		return
	}
	e.c.Close()
	if err := e.db.Close(); err != nil {
		e.t.Error(err)
	}
	e.db = nil
}

func (e *env) reopen() {
	e.t.Helper()
	e.close()
	e.open()
}

// ecb encrypts key TDES-ECB under parent.
func ecb(parent, key []byte) []byte {
	blk, err := tdesCipher(parent)
	if err != nil {
		panic(err)
	}
	out := make([]byte, len(key))
	for i := 0; i < len(key); i += des.BlockSize {
		blk.Encrypt(out[i:], key[i:i+des.BlockSize])
	}
	return out
}

func check(key []byte, n int) []byte {
	cv, err := kcv.TDES(key, n)
	if err != nil {
		panic(err)
	}
	return cv
}

func kcvHex(key []byte) string { return fmt.Sprintf("%X", check(key, 3)) }

var bg = context.Background()

// standard loads the doc's hierarchy: transport, KEK in 1, PIK in 2, MAK in 3, TDK in 4,
// single-length MAK in 5.
func (e *env) standard() {
	e.t.Helper()
	must := func(k keystore.Key, err error) keystore.Key {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
		return k
	}
	k := must(e.b.InjectTransport(bg, keystore.TDES, transportKey, false))
	if k.KCV != "08D7B4" || k.Slot != 0 || k.Usage != keystore.UsageTransport || k.Length != 16 {
		e.t.Fatalf("transport: %+v", k)
	}
	k = must(e.b.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3)))
	if k.KCV != "EB7A8D" || k.Usage != keystore.UsageKEK {
		e.t.Fatalf("kek: %+v", k)
	}
	k = must(e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, ecb(kekKey, pikKey), check(pikKey, 4)))
	if k.KCV != "E99443" || k.Usage != keystore.UsagePIK {
		e.t.Fatalf("pik: %+v", k)
	}
	must(e.b.LoadEncrypted(bg, 3, 1, keystore.UsageMAK, ecb(kekKey, makKey), check(makKey, 3)))
	must(e.b.LoadEncrypted(bg, 4, 1, keystore.UsageTDK, ecb(kekKey, tdkKey), check(tdkKey, 3)))
	must(e.b.LoadEncrypted(bg, 5, 1, keystore.UsageMAK, ecb(kekKey, mak8Key), check(mak8Key, 3)))
}

func (e *env) keys() map[int]keystore.Key {
	e.t.Helper()
	ks, err := e.b.Keys(bg)
	if err != nil {
		e.t.Fatal(err)
	}
	m := make(map[int]keystore.Key)
	last := -1
	for _, k := range ks {
		if k.Slot <= last {
			e.t.Fatalf("Keys not in slot order: %+v", ks)
		}
		last = k.Slot
		m[k.Slot] = k
	}
	return m
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

func TestNameAndMaxSlot(t *testing.T) {
	e := newEnv(t)
	if e.b.Name() != "software" || e.b.MaxSlot() != 15 {
		t.Fatalf("%s %d", e.b.Name(), e.b.MaxSlot())
	}
	c := store.NewCommitter(e.db)
	defer c.Close()
	b, err := Open(Options{DB: e.db, Commit: c, Root: FileRootKey(e.root)})
	if err != nil || b.MaxSlot() != DefaultMaxSlot {
		t.Fatalf("default MaxSlot: %v %v", b, err)
	}
	for _, o := range []Options{
		{Commit: c, Root: FileRootKey(e.root)},
		{DB: e.db, Root: FileRootKey(e.root)},
		{DB: e.db, Commit: c},
		{DB: e.db, Commit: c, Root: FileRootKey(e.root), MaxSlot: -1},
		{DB: e.db, Commit: c, Root: staticRoot(make([]byte, 16))},
	} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) accepted", o)
		}
	}
}

type staticRoot []byte

func (s staticRoot) RootKey() ([]byte, error) { return bytes.Clone(s), nil }

func TestLoadEncryptedHierarchyAndDurability(t *testing.T) {
	e := newEnv(t)
	e.standard()
	want := map[int]keystore.Key{
		0: {Slot: 0, Usage: keystore.UsageTransport, Algorithm: keystore.TDES, Length: 16, KCV: "08D7B4"},
		1: {Slot: 1, Usage: keystore.UsageKEK, Algorithm: keystore.TDES, Length: 16, KCV: "EB7A8D"},
		2: {Slot: 2, Usage: keystore.UsagePIK, Algorithm: keystore.TDES, Length: 16, KCV: "E99443"},
		3: {Slot: 3, Usage: keystore.UsageMAK, Algorithm: keystore.TDES, Length: 16, KCV: kcvHex(makKey)},
		4: {Slot: 4, Usage: keystore.UsageTDK, Algorithm: keystore.TDES, Length: 24, KCV: kcvHex(tdkKey)},
		5: {Slot: 5, Usage: keystore.UsageMAK, Algorithm: keystore.TDES, Length: 8, KCV: kcvHex(mak8Key)},
	}
	if got := e.keys(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Keys:\n got %v\nwant %v", got, want)
	}
	e.reopen()
	if got := e.keys(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Keys after reopen:\n got %v\nwant %v", got, want)
	}
	// A working key may replace another in place; a KEK may be replaced too.
	if k, err := e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, ecb(kekKey, pik2Key), check(pik2Key, 3)); err != nil || k.KCV != kcvHex(pik2Key) {
		t.Fatalf("replace PIK: %+v %v", k, err)
	}
	if got := e.keys()[2].KCV; got != kcvHex(pik2Key) {
		t.Fatalf("slot 2 KCV %s", got)
	}
}

func TestLoadEncryptedErrors(t *testing.T) {
	e := newEnv(t)
	e.standard()
	before := e.keys()
	encPIK := ecb(kekKey, pik2Key)
	for _, c := range []struct {
		name         string
		slot, parent int
		u            keystore.Usage
		enc, cv      []byte
		want         error
	}{
		{"slot 0", 0, 1, keystore.UsagePIK, encPIK, check(pik2Key, 3), keystore.ErrBadSlot},
		{"slot negative", -1, 1, keystore.UsagePIK, encPIK, check(pik2Key, 3), keystore.ErrBadSlot},
		{"slot past max", 16, 1, keystore.UsagePIK, encPIK, check(pik2Key, 3), keystore.ErrBadSlot},
		{"parent past max", 2, 16, keystore.UsagePIK, encPIK, check(pik2Key, 3), keystore.ErrBadSlot},
		{"parent negative", 2, -1, keystore.UsagePIK, encPIK, check(pik2Key, 3), keystore.ErrBadSlot},
		{"transport usage", 2, 0, keystore.UsageTransport, encPIK, check(pik2Key, 3), keystore.ErrWrongUsage},
		{"unknown usage", 2, 1, keystore.Usage(5), encPIK, check(pik2Key, 3), keystore.ErrWrongUsage},
		{"key length", 2, 1, keystore.UsagePIK, encPIK[:12], check(pik2Key, 3), keystore.ErrBadLength},
		{"no key", 2, 1, keystore.UsagePIK, nil, check(pik2Key, 3), keystore.ErrBadLength},
		{"check length 2", 2, 1, keystore.UsagePIK, encPIK, check(pik2Key, 2), keystore.ErrBadLength},
		{"check length 5", 2, 1, keystore.UsagePIK, encPIK, check(pik2Key, 5), keystore.ErrBadLength},
		{"empty parent", 2, 9, keystore.UsagePIK, encPIK, check(pik2Key, 3), keystore.ErrNoKey},
		{"PIK under transport", 2, 0, keystore.UsagePIK, ecb(transportKey, pik2Key), check(pik2Key, 3), keystore.ErrWrongUsage},
		{"KEK under KEK", 6, 1, keystore.UsageKEK, ecb(kekKey, pik2Key), check(pik2Key, 3), keystore.ErrWrongUsage},
		{"PIK under PIK", 2, 2, keystore.UsagePIK, ecb(pikKey, pik2Key), check(pik2Key, 3), keystore.ErrWrongUsage},
		{"MAK under MAK", 3, 3, keystore.UsageMAK, ecb(makKey, pik2Key), check(pik2Key, 3), keystore.ErrWrongUsage},
		{"TDK under TDK", 2, 4, keystore.UsageTDK, ecb(tdkKey, pik2Key), check(pik2Key, 3), keystore.ErrWrongUsage},
		{"KCV mismatch", 2, 1, keystore.UsagePIK, encPIK, check(pikKey, 3), keystore.ErrKCVMismatch},
		{"KCV mismatch 4", 2, 1, keystore.UsagePIK, encPIK, append(check(pik2Key, 3), 0), keystore.ErrKCVMismatch},
		{"wrong KEK", 2, 1, keystore.UsagePIK, ecb(makKey, pik2Key), check(pik2Key, 3), keystore.ErrKCVMismatch},
		{"KEK KCV mismatch", 1, 0, keystore.UsageKEK, ecb(transportKey, pik2Key), check(kekKey, 3), keystore.ErrKCVMismatch},
	} {
		k, err := e.b.LoadEncrypted(bg, c.slot, c.parent, c.u, c.enc, c.cv)
		wantErr(t, c.name, err, c.want)
		if k != (keystore.Key{}) {
			t.Errorf("%s: key %+v with an error", c.name, k)
		}
	}
	if after := e.keys(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a refused load changed the slots:\n%v\n%v", before, after)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := e.b.LoadEncrypted(ctx, 2, 1, keystore.UsagePIK, encPIK, check(pik2Key, 3))
	wantErr(t, "cancelled", err, context.Canceled)
}

func TestInjectTransport(t *testing.T) {
	e := newEnv(t)
	_, err := e.b.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3))
	wantErr(t, "KEK before injection", err, keystore.ErrNoKey)
	for _, c := range []struct {
		alg  keystore.Algorithm
		n    int
		want error
	}{
		{keystore.TDES, 8, keystore.ErrBadLength},
		{keystore.TDES, 32, keystore.ErrBadLength},
		{keystore.AES, 8, keystore.ErrBadLength},
		{keystore.AES, 20, keystore.ErrBadLength},
		{keystore.Algorithm(7), 16, keystore.ErrWrongUsage},
	} {
		_, err := e.b.InjectTransport(bg, c.alg, make([]byte, c.n), false)
		wantErr(t, fmt.Sprintf("%s %d", c.alg, c.n), err, c.want)
	}
	if len(e.keys()) != 0 {
		t.Fatal("refused injections stored something")
	}
	if _, err := e.b.InjectTransport(bg, keystore.TDES, transportKey, false); err != nil {
		t.Fatal(err)
	}
	_, err = e.b.InjectTransport(bg, keystore.AES, aesTransport, false)
	wantErr(t, "second injection", err, keystore.ErrWrongUsage)
	if e.keys()[0].KCV != "08D7B4" {
		t.Fatal("refused injection replaced the key")
	}
	k, err := e.b.InjectTransport(bg, keystore.AES, aesTransport, true)
	if err != nil || k.Algorithm != keystore.AES || k.Length != 32 {
		t.Fatalf("replace: %+v %v", k, err)
	}
	cv, _ := kcv.AES(aesTransport, 3)
	if k.KCV != fmt.Sprintf("%X", cv) || e.keys()[0] != k {
		t.Fatalf("AES transport KCV %+v", k)
	}
	// An AES parent does not decrypt TDES-ECB.
	_, err = e.b.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3))
	wantErr(t, "LoadEncrypted under AES", err, keystore.ErrWrongUsage)
	for _, n := range []int{16, 24} {
		k, err := e.b.InjectTransport(bg, keystore.TDES, tdkKey[:n], true)
		if err != nil || k.Length != n || k.KCV != kcvHex(tdkKey[:n]) {
			t.Fatalf("TDES %d: %+v %v", n, k, err)
		}
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err = e.b.InjectTransport(ctx, keystore.TDES, transportKey, true)
	wantErr(t, "cancelled", err, context.Canceled)
}

func TestMAC(t *testing.T) {
	e := newEnv(t)
	e.standard()
	data := []byte("0200 3000 payment message to authenticate, 47 b")
	for _, c := range []struct {
		slot int
		alg  keystore.MACAlgorithm
		fn   func(k, d []byte) ([]byte, error)
		key  []byte
	}{
		{3, keystore.MACX919, mac.X919, makKey},
		{3, keystore.MACUnionPayECB, mac.UnionPayECB, makKey},
		{5, keystore.MACX99, mac.X99, mak8Key},
		{5, keystore.MACUnionPayECB, mac.UnionPayECB, mak8Key},
	} {
		want, err := c.fn(c.key, data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.b.MAC(bg, c.slot, c.alg, data)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("slot %d alg %d: %X %v, want %X", c.slot, c.alg, got, err, want)
		}
	}
	if got, err := e.b.MAC(bg, 3, keystore.MACX919, nil); err != nil || len(got) != 8 {
		t.Errorf("empty data: %X %v", got, err)
	}
	for _, c := range []struct {
		name string
		slot int
		alg  keystore.MACAlgorithm
		want error
	}{
		{"PIK", 2, keystore.MACX919, keystore.ErrWrongUsage},
		{"KEK", 1, keystore.MACX919, keystore.ErrWrongUsage},
		{"TDK", 4, keystore.MACX919, keystore.ErrWrongUsage},
		{"transport", 0, keystore.MACX919, keystore.ErrWrongUsage},
		{"empty", 9, keystore.MACX919, keystore.ErrNoKey},
		{"slot past max", 16, keystore.MACX919, keystore.ErrBadSlot},
		{"slot negative", -1, keystore.MACX919, keystore.ErrBadSlot},
		{"X9.9 on a double-length key", 3, keystore.MACX99, keystore.ErrBadLength},
		{"X9.19 on a single-length key", 5, keystore.MACX919, keystore.ErrBadLength},
		{"unknown algorithm", 3, keystore.MACAlgorithm(9), keystore.ErrWrongUsage},
	} {
		got, err := e.b.MAC(bg, c.slot, c.alg, data)
		wantErr(t, c.name, err, c.want)
		if got != nil {
			t.Errorf("%s: MAC with an error", c.name)
		}
	}
}

func TestErase(t *testing.T) {
	e := newEnv(t)
	e.standard()
	if err := e.b.Erase(bg, false); err != nil {
		t.Fatal(err)
	}
	ks := e.keys()
	if len(ks) != 1 || ks[0].KCV != "08D7B4" {
		t.Fatalf("after Erase(false): %v", ks)
	}
	_, err := e.b.MAC(bg, 3, keystore.MACX919, []byte("x"))
	wantErr(t, "MAC after erase", err, keystore.ErrNoKey)
	_, err = e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, ecb(kekKey, pikKey), check(pikKey, 3))
	wantErr(t, "PIK after erase", err, keystore.ErrNoKey)
	e.standardAfterErase()
	if err := e.b.Erase(bg, true); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if ks := e.keys(); len(ks) != 0 {
		t.Fatalf("after Erase(true): %v", ks)
	}
	_, err = e.b.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3))
	wantErr(t, "KEK after full erase", err, keystore.ErrNoKey)
	// The factory step is possible again without replace.
	e.standard()
	// Nothing is left in the bucket.
	if err := e.b.Erase(bg, true); err != nil {
		t.Fatal(err)
	}
	_ = e.db.View(func(tx *store.Tx) error {
		if n := tx.Bucket([]byte(Bucket)).Stats().KeyN; n != 0 {
			t.Errorf("%d records left", n)
		}
		return nil
	})
}

func (e *env) standardAfterErase() {
	e.t.Helper()
	if _, err := e.b.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3)); err != nil {
		e.t.Fatal(err)
	}
}

// rawPut and rawGet reach under the backend.
func (e *env) rawGet(slot int) []byte {
	var v []byte
	_ = e.db.View(func(tx *store.Tx) error {
		v = bytes.Clone(tx.Bucket([]byte(Bucket)).Get(slotKey(slot)))
		return nil
	})
	return v
}

func (e *env) rawPut(slot int, v []byte) {
	e.t.Helper()
	err := e.db.Update(func(tx *store.Tx) error {
		return tx.Bucket([]byte(Bucket)).Put(slotKey(slot), v)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestTamperedRecordReadsEmpty(t *testing.T) {
	e := newEnv(t)
	e.standard()
	for _, tamper := range []func([]byte) []byte{
		func(v []byte) []byte { v[len(v)-1] ^= 1; return v },       // tag
		func(v []byte) []byte { v[nonceSize+1] ^= 0x80; return v }, // ciphertext
		func(v []byte) []byte { v[0] ^= 1; return v },              // nonce
		func(v []byte) []byte { return v[:len(v)-1] },              // truncated
		func(v []byte) []byte { return v[:5] },                     // very short
		func(v []byte) []byte { return []byte{} },                  // empty
		func(v []byte) []byte { return append(v, 0) },              // extended
	} {
		e.log.b.Reset()
		good := e.rawGet(3)
		e.rawPut(3, tamper(bytes.Clone(good)))
		for range 3 {
			_, err := e.b.MAC(bg, 3, keystore.MACX919, []byte("x"))
			wantErr(t, "MAC on tampered", err, keystore.ErrNoKey)
			if _, ok := e.keys()[3]; ok {
				t.Fatal("tampered slot listed")
			}
		}
		if n := strings.Count(e.log.String(), "does not open"); n != 1 {
			t.Fatalf("logged %d times, want once:\n%s", n, e.log.String())
		}
		if !strings.Contains(e.log.String(), "slot=3") {
			t.Fatalf("log does not name the slot:\n%s", e.log.String())
		}
		e.rawPut(3, good)
		if _, err := e.b.MAC(bg, 3, keystore.MACX919, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// A tampered parent is no parent.
	good := e.rawGet(1)
	bad := bytes.Clone(good)
	bad[nonceSize] ^= 1
	e.rawPut(1, bad)
	_, err := e.b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, ecb(kekKey, pik2Key), check(pik2Key, 3))
	wantErr(t, "load under a tampered KEK", err, keystore.ErrNoKey)
	// A load into a tampered slot replaces the record.
	if _, err := e.b.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3)); err != nil {
		t.Fatal(err)
	}
	if e.keys()[1].KCV != "EB7A8D" {
		t.Fatal("slot 1 not reloaded")
	}
}

func TestRecordMovedToAnotherSlot(t *testing.T) {
	e := newEnv(t)
	e.standard()
	e.rawPut(6, e.rawGet(3)) // MAK copied to an empty slot
	e.rawPut(2, e.rawGet(5)) // MAK over the PIK
	e.rawPut(0, e.rawGet(1)) // KEK over the transport key
	e.rawPut(7, e.rawGet(0)) // and that copied once more
	ks := e.keys()
	for _, s := range []int{0, 2, 6, 7} {
		if _, ok := ks[s]; ok {
			t.Errorf("slot %d holds a moved record and is listed", s)
		}
	}
	if len(ks) != 4 {
		t.Errorf("Keys %v", ks)
	}
	_, err := e.b.MAC(bg, 6, keystore.MACX919, []byte("x"))
	wantErr(t, "MAC with a copied record", err, keystore.ErrNoKey)
	_, err = e.b.LoadEncrypted(bg, 8, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3))
	wantErr(t, "KEK under a moved transport record", err, keystore.ErrNoKey)
	if _, err := e.b.InjectTransport(bg, keystore.TDES, transportKey, false); err != nil {
		t.Fatalf("slot 0 reads empty, injection must work: %v", err)
	}
}

func TestOtherRootKeyReadsEmpty(t *testing.T) {
	e := newEnv(t)
	e.standard()
	e.close()
	if err := os.Remove(e.root); err != nil {
		t.Fatal(err)
	}
	e.open() // a new root key is created: another device's
	if ks := e.keys(); len(ks) != 0 {
		t.Fatalf("records sealed by another root key opened: %v", ks)
	}
	if n := strings.Count(e.log.String(), "does not open"); n != 6 {
		t.Fatalf("logged %d unreadable records, want 6", n)
	}
	_, err := e.b.MAC(bg, 3, keystore.MACX919, []byte("x"))
	wantErr(t, "MAC", err, keystore.ErrNoKey)
	e.standard()
}

func TestFileRootKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "root.key")
	k1, err := FileRootKey(p).RootKey()
	if err != nil || len(k1) != RootKeySize {
		t.Fatalf("%d %v", len(k1), err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != RootKeySize {
		t.Fatalf("%v %v", fi.Mode(), err)
	}
	k2, err := FileRootKey(p).RootKey()
	if err != nil || !bytes.Equal(k1, k2) || bytes.Equal(k1, make([]byte, RootKeySize)) {
		t.Fatal("root key not kept")
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if err := os.WriteFile(p, k1[:31], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FileRootKey(p).RootKey(); err == nil {
		t.Fatal("short root key file accepted")
	}
	if err := os.WriteFile(p, append(k1, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FileRootKey(p).RootKey(); err == nil {
		t.Fatal("long root key file accepted")
	}
	// Concurrent first uses agree on one key.
	p = filepath.Join(dir, "race.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := FileRootKey(p).RootKey()
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("concurrent creations disagree")
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	e.standard()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				key := pikKey
				if (i+j)%2 == 1 {
					key = pik2Key
				}
				if _, err := e.b.LoadEncrypted(bg, 6+i, 1, keystore.UsagePIK, ecb(kekKey, key), check(key, 3)); err != nil {
					t.Error(err)
				}
				if _, err := e.b.MAC(bg, 3, keystore.MACUnionPayECB, []byte("abc")); err != nil {
					t.Error(err)
				}
				if _, err := e.b.Keys(bg); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := len(e.keys()); n != 14 {
		t.Fatalf("%d keys", n)
	}
}

func BenchmarkMACUnionPay200(b *testing.B) {
	dir := b.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	c := store.NewCommitter(db)
	defer c.Close()
	k, err := Open(Options{DB: db, Commit: c, Root: FileRootKey(filepath.Join(dir, "root.key"))})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := k.InjectTransport(bg, keystore.TDES, transportKey, false); err != nil {
		b.Fatal(err)
	}
	if _, err := k.LoadEncrypted(bg, 1, 0, keystore.UsageKEK, ecb(transportKey, kekKey), check(kekKey, 3)); err != nil {
		b.Fatal(err)
	}
	if _, err := k.LoadEncrypted(bg, 3, 1, keystore.UsageMAK, ecb(kekKey, makKey), check(makKey, 3)); err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.MAC(bg, 3, keystore.MACUnionPayECB, data); err != nil {
			b.Fatal(err)
		}
	}
}
