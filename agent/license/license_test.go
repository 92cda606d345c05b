package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/veraison/go-cose"
)

// signPayload signs arbitrary payload bytes, for licences Sign would refuse to make.
func signPayload(t testing.TB, key ed25519.PrivateKey, kid string, payload []byte) []byte {
	t.Helper()
	signer, err := cose.NewSigner(cose.AlgorithmEdDSA, key)
	if err != nil {
		t.Fatal(err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
	if kid != "" {
		msg.Headers.Protected[cose.HeaderLabelKeyID] = []byte(kid)
	}
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		t.Fatal(err)
	}
	raw, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func payloadMap(l License) map[string]any {
	return map[string]any{"v": l.V, "id": l.ID, "serial": l.Serial, "platform": l.Platform,
		"features": l.Features, "issued": l.Issued, "notBefore": l.NotBefore, "expires": l.Expires}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := tmsproto.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignParseVerify(t *testing.T) {
	l := lic("L-1")
	raw := sign(t, relKey, testKid, l)
	info, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if info.KeyID != testKid || info.ID != "L-1" || !slices.Equal(info.Features, l.Features) {
		t.Errorf("parsed %+v", info)
	}
	v, err := NewVerifier(defaultKeys())
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyFor(raw, testTer, t0, DefaultSkew)
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != testSerial || got.Expires != l.Expires || got.Platform != testPlatform {
		t.Errorf("verified %+v", got)
	}
	// The signature is deterministic (Ed25519), so the same licence signs to the same bytes.
	if again := sign(t, relKey, testKid, l); !bytes.Equal(again, raw) {
		t.Error("signing is not deterministic")
	}
	// Any platform.
	anyRaw := sign(t, relKey, testKid, lic("L-any", func(l *License) { l.Platform = AnyPlatform }))
	if _, err := v.VerifyFor(anyRaw, Terminal{Serial: testSerial, Platform: "android-arm64"}, t0, DefaultSkew); err != nil {
		t.Errorf("platform * refused: %v", err)
	}
}

func TestSignRefusesInvalid(t *testing.T) {
	for name, edit := range map[string]func(*License){
		"version":       func(l *License) { l.V = 2 },
		"no id":         func(l *License) { l.ID = "" },
		"bad serial":    func(l *License) { l.Serial = "SN 1" },
		"bad platform":  func(l *License) { l.Platform = "arm64" },
		"no features":   func(l *License) { l.Features = nil },
		"dup feature":   func(l *License) { l.Features = []string{"qr", "qr"} },
		"bad feature":   func(l *License) { l.Features = []string{"Pay ments"} },
		"window":        func(l *License) { l.Expires = l.NotBefore },
		"no issued":     func(l *License) { l.Issued = 0 },
		"long id":       func(l *License) { l.ID = strings.Repeat("a", MaxIDLen+1) },
		"many features": func(l *License) { l.Features = manyFeatures(MaxFeatures + 1) },
	} {
		if _, err := Sign(relKey, testKid, lic("L", edit)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func manyFeatures(n int) []string {
	var f []string
	for i := range n {
		f = append(f, "f"+strings.Repeat("x", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	return f
}

// rejection is one licence the store must refuse, and the error it must give.
type rejection struct {
	name string
	raw  []byte
	want error
}

func rejections(t *testing.T) []rejection {
	good := sign(t, relKey, testKid, lic("L-new"))
	other := testKey("other")
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	extra := payloadMap(lic("L-new"))
	extra["seats"] = 3
	missing := payloadMap(lic("L-new"))
	delete(missing, "notBefore")
	nonCanon, err := cbor.Marshal(lic("L-new")) // struct order, not the deterministic order
	if err != nil {
		t.Fatal(err)
	}
	return []rejection{
		{"other serial", sign(t, relKey, testKid, lic("L-new", func(l *License) { l.Serial = "SN-0002" })), ErrOtherTerminal},
		{"other platform", sign(t, relKey, testKid, lic("L-new", func(l *License) { l.Platform = "android-arm64" })), ErrOtherPlatform},
		{"expired", sign(t, relKey, testKid, lic("L-new", func(l *License) {
			l.NotBefore, l.Expires = t0.Add(-48*time.Hour).Unix(), t0.Add(-DefaultSkew-time.Second).Unix()
		})), ErrExpired},
		{"not yet valid", sign(t, relKey, testKid, lic("L-new", func(l *License) { l.NotBefore = t0.Add(DefaultSkew + time.Minute).Unix() })), ErrNotYetValid},
		{"bad signature", flipped, ErrSignature},
		{"trusted kid, other key", sign(t, other, testKid, lic("L-new")), ErrSignature},
		{"unknown key", sign(t, other, "rel-9", lic("L-new")), ErrUnknownKey},
		{"no kid", signPayload(t, relKey, "", mustMarshal(t, lic("L-new"))), ErrUnknownKey},
		{"truncated", good[:len(good)-7], ErrMalformed},
		{"trailing bytes", append(bytes.Clone(good), 0x00), ErrMalformed},
		{"unknown field", signPayload(t, relKey, testKid, mustMarshal(t, extra)), ErrMalformed},
		{"missing field", signPayload(t, relKey, testKid, mustMarshal(t, missing)), ErrMalformed},
		{"not deterministic", signPayload(t, relKey, testKid, nonCanon), ErrMalformed},
		{"payload not a map", signPayload(t, relKey, testKid, mustMarshal(t, []int{1})), ErrMalformed},
		{"oversized", append(bytes.Clone(good), make([]byte, MaxSize)...), ErrMalformed},
		{"untagged", good[1:], ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"garbage", []byte("not a licence"), ErrMalformed},
	}
}

func TestInstallRejectionsLeaveCurrent(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	c := &clock{t: t0}
	s := openStore(t, db, c, defaultKeys())
	old := sign(t, relKey, testKid, lic("L-old"))
	if _, err := s.Install(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	for _, r := range rejections(t) {
		_, err := s.Install(t.Context(), r.raw)
		if !errors.Is(err, r.want) {
			t.Errorf("%s: got %v, want %v", r.name, err, r.want)
			continue
		}
		var le *Error
		if !errors.As(err, &le) || le.Reason() == "" {
			t.Errorf("%s: %T %v is not an *Error with a reason", r.name, err, err)
		}
		if cur, ok := s.Current(); !ok || cur.ID != "L-old" {
			t.Errorf("%s: current licence now %+v, %v", r.name, cur, ok)
		}
		if err := s.Check("payments"); err != nil {
			t.Errorf("%s: check after a refused install: %v", r.name, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// And on disk.
	db = openDB(t, dir)
	defer db.Close()
	s = openStore(t, db, c, defaultKeys())
	if cur, ok := s.Current(); !ok || cur.ID != "L-old" {
		t.Errorf("after reopen: %+v, %v", cur, ok)
	}
}

func TestSkewAllowance(t *testing.T) {
	v, err := NewVerifier(defaultKeys())
	if err != nil {
		t.Fatal(err)
	}
	almostExpired := sign(t, relKey, testKid, lic("L", func(l *License) {
		l.NotBefore, l.Expires = t0.Add(-time.Hour).Unix(), t0.Add(-DefaultSkew+time.Second).Unix()
	}))
	if _, err := v.VerifyFor(almostExpired, testTer, t0, DefaultSkew); err != nil {
		t.Errorf("expired within the skew: %v", err)
	}
	early := sign(t, relKey, testKid, lic("L", func(l *License) { l.NotBefore = t0.Add(DefaultSkew - time.Second).Unix() }))
	if _, err := v.VerifyFor(early, testTer, t0, DefaultSkew); err != nil {
		t.Errorf("not yet valid within the skew: %v", err)
	}
	never := sign(t, relKey, testKid, lic("L", func(l *License) { l.Expires = 0 }))
	if _, err := v.VerifyFor(never, testTer, t0.Add(100*365*24*time.Hour), DefaultSkew); err != nil {
		t.Errorf("expires 0: %v", err)
	}
}

func TestCheck(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	c := &clock{t: t0}
	s := openStore(t, db, c, defaultKeys())
	if err := s.Check("payments"); !errors.Is(err, ErrUnlicensed) || !errors.Is(err, ErrNoLicense) {
		t.Errorf("none installed: %v", err)
	}
	if st := s.Status(); st.State != StateMissing {
		t.Errorf("status %+v", st)
	}
	if _, ok := s.Current(); ok {
		t.Error("current without a licence")
	}
	exp := t0.Add(time.Hour)
	raw := sign(t, relKey, testKid, lic("L-1", func(l *License) { l.Expires = exp.Unix() }))
	info, err := s.Install(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "L-1" || info.KeyID != testKid {
		t.Errorf("installed %+v", info)
	}
	if err := s.Check("payments"); err != nil {
		t.Error(err)
	}
	if err := s.Check("ecr"); !errors.Is(err, ErrUnlicensed) || !errors.Is(err, ErrFeatureNotCovered) {
		t.Errorf("uncovered feature: %v", err)
	}
	if st := s.Status(); st.State != StateValid || st.ID != "L-1" || st.Expires != exp.Unix() || !slices.Equal(st.Features, []string{"payments", "qr"}) {
		t.Errorf("status %+v", st)
	}
	// The licence expires while the agent runs.
	c.t = exp.Add(DefaultSkew)
	if err := s.Check("payments"); !errors.Is(err, ErrUnlicensed) || !errors.Is(err, ErrExpired) {
		t.Errorf("after expiry: %v", err)
	}
	if st := s.Status(); st.State != StateExpired || st.ID != "L-1" || st.Reason != "expired" {
		t.Errorf("status %+v", st)
	}
	if cur, ok := s.Current(); !ok || cur.ID != "L-1" {
		t.Errorf("current after expiry: %+v %v", cur, ok)
	}
	// The same licence again is refused now (expired), a new one replaces it.
	if _, err := s.Install(t.Context(), raw); !errors.Is(err, ErrExpired) {
		t.Errorf("re-install of an expired licence: %v", err)
	}
	c.t = t0
	if _, err := s.Install(t.Context(), raw); err != nil {
		t.Errorf("re-install of the same licence: %v", err)
	}
	c.t = exp.Add(DefaultSkew)
	renewed := sign(t, relKey, testKid, lic("L-2", func(l *License) {
		l.Features = []string{"payments", "ecr"}
		l.Expires = 0
	}))
	if _, err := s.Install(t.Context(), renewed); err != nil {
		t.Fatal(err)
	}
	if err := s.Check("ecr"); err != nil {
		t.Error(err)
	}
	var nilStore *Store
	if err := nilStore.Check("payments"); !errors.Is(err, ErrUnlicensed) {
		t.Errorf("nil store: %v", err)
	}
}

func TestReverifiedAtOpen(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	db := openDB(t, dir)
	s := openStore(t, db, c, defaultKeys())
	if _, err := s.Install(t.Context(), sign(t, relKey, testKid, lic("L-1"))); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, tc := range []struct {
		name   string
		keys   map[string]ed25519.PublicKey
		ter    Terminal
		want   error
		reason string
	}{
		{"release key rotated", map[string]ed25519.PublicKey{"rel-2": pub(testKey("rel-2"))}, testTer, ErrUnknownKey, "unknown_key"},
		{"key replaced under the same id", map[string]ed25519.PublicKey{testKid: pub(testKey("rel-2"))}, testTer, ErrSignature, "bad_signature"},
		{"serial changed", defaultKeys(), Terminal{Serial: "SN-0009", Platform: testPlatform}, ErrOtherTerminal, "other_terminal"},
		{"platform changed", defaultKeys(), Terminal{Serial: testSerial, Platform: "linux-armv7"}, ErrOtherPlatform, "other_platform"},
	} {
		db := openDB(t, dir)
		s := openStore(t, db, c, tc.keys, func(o *Options) { o.Terminal = tc.ter })
		if _, ok := s.Current(); ok {
			t.Errorf("%s: still current", tc.name)
		}
		if err := s.Check("payments"); !errors.Is(err, ErrUnlicensed) || !errors.Is(err, tc.want) {
			t.Errorf("%s: check %v", tc.name, err)
		}
		if st := s.Status(); st.State != StateInvalid || st.ID != "L-1" || st.Reason != tc.reason {
			t.Errorf("%s: status %+v", tc.name, st)
		}
		db.Close()
	}
	// Back with the right key, it is valid again: nothing was deleted.
	db = openDB(t, dir)
	defer db.Close()
	s = openStore(t, db, c, defaultKeys())
	if cur, ok := s.Current(); !ok || cur.ID != "L-1" {
		t.Errorf("with the key back: %+v %v", cur, ok)
	}
}

func TestCorruptRecordIsInvalid(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	db := openDB(t, dir)
	s := openStore(t, db, c, defaultKeys())
	if _, err := s.Install(t.Context(), sign(t, relKey, testKid, lic("L-1"))); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		v := bytes.Clone(b.Get(keyCurrent))
		v[len(v)-3] ^= 0xff
		return b.Put(keyCurrent, v)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	s = openStore(t, db, c, defaultKeys())
	if st := s.Status(); st.State != StateInvalid || st.Reason != "malformed" {
		t.Errorf("status %+v", st)
	}
	if err := s.Check("payments"); !errors.Is(err, ErrUnlicensed) {
		t.Errorf("check %v", err)
	}
	// A new licence repairs it.
	if _, err := s.Install(t.Context(), sign(t, relKey, testKid, lic("L-2"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Check("payments"); err != nil {
		t.Error(err)
	}
}

// TestStorageFailureLeavesCurrent injects a failing transaction (the database is opened
// read-only, so bbolt refuses the write): the licence in use must not change, in memory or on
// disk.
func TestStorageFailureLeavesCurrent(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	db := openDB(t, dir)
	commit := store.NewCommitter(db)
	s := openStore(t, db, c, defaultKeys(), func(o *Options) { o.Commit = commit })
	if _, err := s.Install(t.Context(), sign(t, relKey, testKid, lic("L-1"))); err != nil {
		t.Fatal(err)
	}
	commit.Close()
	// A transaction that fails inside bbolt (the database is read-only).
	db.Close()
	ro := openReadOnly(t, dir)
	s = openStore(t, ro, c, defaultKeys())
	if _, err := s.Install(t.Context(), sign(t, relKey, testKid, lic("L-4"))); err == nil {
		t.Error("install on a read-only database succeeded")
	}
	if cur, ok := s.Current(); !ok || cur.ID != "L-1" {
		t.Errorf("current %+v %v", cur, ok)
	}
	ro.Close()
	db = openDB(t, dir)
	defer db.Close()
	if cur, ok := openStore(t, db, c, defaultKeys()).Current(); !ok || cur.ID != "L-1" {
		t.Errorf("on disk %+v %v", cur, ok)
	}
}

func TestLastAsked(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: t0}
	db := openDB(t, dir)
	s := openStore(t, db, c, defaultKeys())
	if !s.LastAsked().IsZero() {
		t.Error("asked before ever asking")
	}
	if err := db.Update(func(tx *store.Tx) error { return s.MarkAskedTx(tx, t0) }); err != nil {
		t.Fatal(err)
	}
	if !s.LastAsked().Equal(t0) {
		t.Errorf("last asked %v", s.LastAsked())
	}
	// A rolled-back transaction changes nothing.
	_ = db.Update(func(tx *store.Tx) error {
		if err := s.MarkAskedTx(tx, t0.Add(time.Hour)); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	if !s.LastAsked().Equal(t0) {
		t.Errorf("after rollback %v", s.LastAsked())
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	if got := openStore(t, db, c, defaultKeys()).LastAsked(); !got.Equal(t0) {
		t.Errorf("after reopen %v", got)
	}
}

func TestReasonOf(t *testing.T) {
	if r := ReasonOf(fail(ErrExpired, nil, "x")); r != "expired" {
		t.Error(r)
	}
	if r := ReasonOf(errors.New("disk")); r != "internal" {
		t.Error(r)
	}
	if r := ReasonOf(ErrNoLicense); r != "missing" {
		t.Error(r)
	}
}

func TestCurrentPlatform(t *testing.T) {
	p := CurrentPlatform()
	if !platformRe.MatchString(p) {
		t.Errorf("CurrentPlatform() = %q is not a licence platform", p)
	}
}
