package keystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/posagent/posagent/agent/store"
)

// fakeBackend is the innermost fake: "key blocks" are "usage:kcv" strings, so the store's
// own logic (slots, map, atomicity) is tested here; the real backends have their own tests
// and meet the store in the agent's tests.
type fakeBackend struct {
	mu    sync.Mutex
	slots map[int]Key
	max   int
	fail  map[string]error // block → error on load
	macs  []int            // slots MACs were asked of
}

func newFake() *fakeBackend {
	return &fakeBackend{slots: map[int]Key{0: {Slot: 0, Usage: UsageTransport, Length: 16, KCV: "08D7B4"}}, max: 15, fail: map[string]error{}}
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) MaxSlot() int { return f.max }

func (f *fakeBackend) LoadBlock(_ context.Context, slot, parent int, block string) (Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[block]; err != nil {
		return Key{}, err
	}
	u, kcv, ok := strings.Cut(block, ":")
	if !ok {
		return Key{}, ErrBadKeyBlock
	}
	var usage Usage
	switch u {
	case "kek":
		usage = UsageKEK
	case "pik":
		usage = UsagePIK
	case "mak":
		usage = UsageMAK
	case "tdk":
		usage = UsageTDK
	default:
		return Key{}, ErrBadKeyBlock
	}
	p, ok := f.slots[parent]
	if !ok {
		return Key{}, ErrNoKey
	}
	if (usage == UsageKEK) != (p.Usage == UsageTransport) || (usage != UsageKEK && p.Usage != UsageKEK) {
		return Key{}, ErrWrongUsage
	}
	k := Key{Slot: slot, Usage: usage, Length: 16, KCV: kcv}
	f.slots[slot] = k
	return k, nil
}

func (f *fakeBackend) LoadEncrypted(ctx context.Context, slot, parent int, u Usage, enc, check []byte) (Key, error) {
	return f.LoadBlock(ctx, slot, parent, u.String()+":"+fmt.Sprintf("%X", check[:3]))
}

func (f *fakeBackend) MAC(_ context.Context, slot int, _ MACAlgorithm, data []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.macs = append(f.macs, slot)
	return []byte("MACMACMA"), nil
}

func (f *fakeBackend) Erase(_ context.Context, transport bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.slots {
		if s != 0 || transport {
			delete(f.slots, s)
		}
	}
	return nil
}

func (f *fakeBackend) Keys(context.Context) ([]Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Key
	for _, k := range f.slots {
		out = append(out, k)
	}
	return out, nil
}

type rig struct {
	db   *store.DB
	c    *store.Committer
	fake *fakeBackend
	s    *Store
}

func newRig(t *testing.T) *rig {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &rig{db: db, c: store.NewCommitter(db), fake: newFake()}
	r.reopen(t)
	return r
}

func (r *rig) reopen(t *testing.T) {
	t.Helper()
	s, err := Open(Options{DB: r.db, Commit: r.c, Backend: r.fake,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.s = s
}

func blocks(items ...string) []Item {
	var out []Item
	for _, it := range items {
		role, block, _ := strings.Cut(it, "=")
		out = append(out, Item{Role: Role(role), Block: block})
	}
	return out
}

func kcvs(s *Store) string {
	var parts []string
	for _, e := range s.Entries() {
		parts = append(parts, fmt.Sprintf("%s=%s@%d", e.Role, e.KCV, e.Slot))
	}
	return strings.Join(parts, " ")
}

func TestLoadSetsAndWorkingKeys(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.s.SetActiveKEK(1)
	got, err := r.s.Load(ctx, Load{Items: blocks("pik=pik:AAAAAA", "kek1=kek:111111", "mak=mak:BBBBBB"), KEK: -1, Command: "c1", Source: "tr31"})
	if err != nil {
		t.Fatal(err)
	}
	// The KEK goes first, so the working keys of the same load come under it.
	if len(got) != 3 || got[0].Role != "kek1" || got[1].Parent != "kek1" {
		t.Fatalf("loaded %+v", got)
	}
	if want := "kek1=111111@1 mak=BBBBBB@3 pik=AAAAAA@2"; kcvs(r.s) != want {
		t.Errorf("map %s, want %s", kcvs(r.s), want)
	}
	if slot, err := r.s.PINKeySlot(); err != nil || slot != 2 {
		t.Errorf("PIK slot %d %v", slot, err)
	}
	if _, err := r.s.MAC(ctx, MACUnionPayECB, []byte("x")); err != nil || r.fake.macs[0] != 3 {
		t.Errorf("MAC %v on %v", err, r.fake.macs)
	}

	// New working keys (a sign-in) go to free slots; the map moves over in one write.
	if _, err := r.s.Load(ctx, Load{Items: []Item{{Role: RolePIK, Encrypted: make([]byte, 16), Check: []byte{0xCC, 0xCC, 0xCC, 0xCC}}}, KEK: -1, Source: "signin"}); err != nil {
		t.Fatal(err)
	}
	if want := "kek1=111111@1 mak=BBBBBB@3 pik=CCCCCC@4"; kcvs(r.s) != want {
		t.Errorf("map %s, want %s", kcvs(r.s), want)
	}
	r.reopen(t)
	if want := "kek1=111111@1 mak=BBBBBB@3 pik=CCCCCC@4"; kcvs(r.s) != want {
		t.Errorf("after reopen %s, want %s", kcvs(r.s), want)
	}
}

func TestFailedLoadLeavesTheSetInUse(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.s.Load(ctx, Load{Items: blocks("kek0=kek:111111", "pik=pik:AAAAAA", "mak=mak:BBBBBB"), KEK: 0}); err != nil {
		t.Fatal(err)
	}
	before := kcvs(r.s)
	r.fake.fail["mak:DDDDDD"] = fmt.Errorf("%w: MAC does not verify", ErrBadKeyBlock)
	for name, tc := range map[string]struct {
		items []Item
		want  error
	}{
		"second key rejected":       {blocks("pik=pik:CCCCCC", "mak=mak:DDDDDD"), ErrBadKeyBlock},
		"block for another usage":   {blocks("pik=pik:CCCCCC", "mak=pik:EEEEEE"), ErrWrongUsage},
		"unknown role":              {blocks("pik=pik:CCCCCC", "xyz=mak:EEEEEE"), ErrUnknownRole},
		"role twice":                {blocks("pik=pik:CCCCCC", "pik=pik:EEEEEE"), ErrBadLoad},
		"master key not loaded":     {blocks("pik=pik:CCCCCC"), ErrNoKey}, // under kek5
		"KEK index out of range":    {blocks("kek12=kek:CCCCCC"), ErrUnknownRole},
		"working key as a KEK":      {blocks("kek2=pik:CCCCCC"), ErrWrongUsage},
		"encrypted KEK not allowed": {[]Item{{Role: "kek2", Encrypted: []byte{1}, Check: []byte{1, 2, 3}}}, ErrBadLoad},
		"another check value":       {[]Item{{Role: "pik", Block: "pik:CCCCCC", KCV: "abcdef"}}, ErrKCVMismatch},
	} {
		kek := 0
		if name == "master key not loaded" {
			kek = 5
		}
		_, err := r.s.Load(ctx, Load{Items: tc.items, KEK: kek})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if got := kcvs(r.s); got != before {
			t.Errorf("%s: map changed to %s", name, got)
		}
	}
	r.reopen(t)
	if got := kcvs(r.s); got != before {
		t.Errorf("after reopen: %s, want %s", got, before)
	}
}

func TestStaleWorkingKeys(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.s.SetActiveKEK(1)
	if _, err := r.s.Load(ctx, Load{Items: blocks("kek1=kek:111111", "kek2=kek:222222", "mak=mak:BBBBBB"), KEK: -1}); err != nil {
		t.Fatal(err)
	}
	r.s.SetActiveKEK(2) // a downloaded parameter switched master keys: sign in again
	if _, err := r.s.MAC(ctx, MACX919, []byte("x")); !errors.Is(err, ErrStaleKey) {
		t.Errorf("MAC under another master key: %v", err)
	}
	if _, err := r.s.PINKeySlot(); !errors.Is(err, ErrNoKey) {
		t.Errorf("PIK never loaded: %v", err)
	}
}

func TestReconcileDropsKeysTheBackendLost(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.s.Load(ctx, Load{Items: blocks("kek0=kek:111111", "pik=pik:AAAAAA"), KEK: 0}); err != nil {
		t.Fatal(err)
	}
	// The PIN pad zeroised itself (tamper) while the agent was down.
	_ = r.fake.Erase(ctx, false)
	r.reopen(t)
	if got := kcvs(r.s); got != "" {
		t.Errorf("map after the backend lost its keys: %s", got)
	}
}

func TestEraseAndSlotsRunOut(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.fake.max = 3
	if _, err := r.s.Load(ctx, Load{Items: blocks("kek0=kek:111111", "pik=pik:AAAAAA"), KEK: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Load(ctx, Load{Items: blocks("pik=pik:CCCCCC", "mak=mak:BBBBBB"), KEK: 0}); !errors.Is(err, ErrNoSlots) {
		t.Errorf("load with one free slot: %v", err)
	}
	if err := r.s.Erase(ctx, false, "test"); err != nil {
		t.Fatal(err)
	}
	if got := kcvs(r.s); got != "" {
		t.Errorf("map after erase: %s", got)
	}
	if keys, _ := r.fake.Keys(ctx); len(keys) != 1 || keys[0].Slot != 0 {
		t.Errorf("backend after erase: %+v", keys)
	}
}
