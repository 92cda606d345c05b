package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	berrors "go.etcd.io/bbolt/errors"
)

func isToken(s string) bool {
	if len(s) != 32 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// TestLifecycle walks the whole protocol: register, the operator's approval, checks, a
// revoke, the old token superseded and the new one working.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	ch := e.startRegister(context.Background(), "Kassa1", "192.0.2.7:41000")
	req := e.waitPending("Kassa1")
	if req.Remote != "192.0.2.7:41000" || req.ID == "" || !req.Since.Equal(t0) {
		t.Fatalf("pending %+v", req)
	}
	if err := e.s.Approve(context.Background(), "not-"+req.ID, "pinpad"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("Approve of another id: %v", err)
	}
	if err := e.s.Approve(context.Background(), req.ID, "pinpad"); err != nil {
		t.Fatal(err)
	}
	r := e.result(ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	tok := r.tok
	if !isToken(tok.Access) || !isToken(tok.Refresh) || tok.Access == tok.Refresh {
		t.Fatalf("tokens %q %q", tok.Access, tok.Refresh)
	}
	if want := t0.Add(DefaultTokenTTL); !tok.Expires.Equal(want) {
		t.Fatalf("expires %v, want %v", tok.Expires, want)
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("request still pending after approval")
	}
	if err := e.s.Approve(context.Background(), req.ID, "pinpad"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("second Approve: %v", err)
	}
	e.mustCheck(tok.Access, "Kassa1")
	e.checkErr(tok.Refresh, ErrUnknownToken) // a refresh token is not an access token

	e.clk.add(time.Hour)
	tok2, err := e.s.Revoke(context.Background(), "Kassa1", tok.Refresh, tok.Access)
	if err != nil {
		t.Fatal(err)
	}
	if !isToken(tok2.Access) || tok2.Access == tok.Access || tok2.Refresh == tok.Refresh {
		t.Fatalf("revoke gave %q %q", tok2.Access, tok2.Refresh)
	}
	if want := t0.Add(time.Hour + DefaultTokenTTL); !tok2.Expires.Equal(want) {
		t.Fatalf("new expiry %v, want %v", tok2.Expires, want)
	}
	name, err := e.s.Check(tok.Access)
	if err != ErrSuperseded || name != "Kassa1" {
		t.Fatalf("old token: %q, %v", name, err)
	}
	e.mustCheck(tok2.Access, "Kassa1")

	// The old pair is spent.
	if _, err := e.s.Revoke(context.Background(), "Kassa1", tok.Refresh, tok.Access); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("revoke with the old access token: %v", err)
	}
	if _, err := e.s.Revoke(context.Background(), "Kassa1", tok.Refresh, tok2.Access); !errors.Is(err, ErrWrongRefresh) {
		t.Fatalf("revoke with the old refresh token: %v", err)
	}
	e.mustCheck(tok2.Access, "Kassa1") // failed revokes change nothing

	list := e.s.List()
	if len(list) != 1 || list[0].Name != "Kassa1" || !list[0].Registered.Equal(t0) ||
		!list[0].Expires.Equal(tok2.Expires) || !list[0].LastSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("List = %+v", list)
	}

	if n := len(e.audit.Find("ecr.register.request")); n != 1 {
		t.Fatalf("%d request events", n)
	}
	ap := e.audit.Find("ecr.register.approve")
	if len(ap) != 1 || ap[0]["by"] != "pinpad" || ap[0]["name"] != "Kassa1" || ap[0]["id"] != req.ID {
		t.Fatalf("approve events %v", ap)
	}
	if rv := e.audit.Find("ecr.revoke"); len(rv) != 1 || rv[0]["name"] != "Kassa1" {
		t.Fatalf("revoke events %v", rv)
	}
	refused := e.audit.Find("ecr.revoke.refused")
	if len(refused) != 2 || refused[0]["reason"] != "superseded" || refused[1]["reason"] != "wrongRefresh" {
		t.Fatalf("refused events %v", refused)
	}
	mustNotContain(t, e.audit, tok.Access, tok.Refresh, tok2.Access, tok2.Refresh)
}

func TestDeny(t *testing.T) {
	e := newEnv(t, nil)
	ch := e.startRegister(context.Background(), "Kassa2", "192.0.2.8:1")
	req := e.waitPending("Kassa2")
	if err := e.s.Deny(context.Background(), req.ID, "diag:admin"); err != nil {
		t.Fatal(err)
	}
	if r := e.result(ch); !errors.Is(r.err, ErrDenied) || r.tok.Access != "" {
		t.Fatalf("Register after deny: %+v", r)
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("still pending")
	}
	if err := e.s.Approve(context.Background(), req.ID, "pinpad"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("Approve after deny: %v", err)
	}
	if len(e.s.List()) != 0 {
		t.Fatal("denied register listed")
	}
	if d := e.audit.Find("ecr.register.deny"); len(d) != 1 || d[0]["by"] != "diag:admin" || d[0]["name"] != "Kassa2" {
		t.Fatalf("deny events %v", d)
	}
	// The slot is free again.
	e.registered("Kassa2")
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RequestTTL = 30 * time.Millisecond })
	_, err := e.s.Register(context.Background(), "Kassa3", "192.0.2.9:1")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Register: %v", err)
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("still pending after the timeout")
	}
	req := e.audit.Find("ecr.register.request")
	if len(req) != 1 {
		t.Fatalf("request events %v", req)
	}
	if err := e.s.Approve(context.Background(), req[0]["id"].(string), "pinpad"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("late Approve: %v", err)
	}
	if to := e.audit.Find("ecr.register.timeout"); len(to) != 1 || to[0]["name"] != "Kassa3" {
		t.Fatalf("timeout events %v", to)
	}
	if len(e.s.List()) != 0 {
		t.Fatal("timed-out register listed")
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := e.startRegister(ctx, "Kassa4", "192.0.2.9:2")
	req := e.waitPending("Kassa4")
	cancel()
	if r := e.result(ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Register after cancel: %v", r.err)
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("still pending after cancel")
	}
	if err := e.s.Approve(context.Background(), req.ID, "pinpad"); !errors.Is(err, ErrNoRequest) {
		t.Fatalf("Approve after cancel: %v", err)
	}
	if c := e.audit.Find("ecr.register.cancel"); len(c) != 1 {
		t.Fatalf("cancel events %v", c)
	}
}

// TestOnePending: of two registrations started together, exactly one waits and the other is
// refused at once; a third while one waits is refused too.
func TestOnePending(t *testing.T) {
	e := newEnv(t, nil)
	a := e.startRegister(context.Background(), "A", "192.0.2.1:1")
	b := e.startRegister(context.Background(), "B", "192.0.2.2:1")
	var refused regResult
	var waiting <-chan regResult
	select {
	case refused = <-a:
		waiting = b
	case refused = <-b:
		waiting = a
	case <-time.After(20 * time.Second):
		t.Fatal("neither Register returned")
	}
	if !errors.Is(refused.err, ErrPending) {
		t.Fatalf("refused with %v", refused.err)
	}
	req, ok := e.s.Pending()
	if !ok {
		t.Fatal("nothing pending")
	}
	if _, err := e.s.Register(context.Background(), "C", "192.0.2.3:1"); !errors.Is(err, ErrPending) {
		t.Fatalf("third Register: %v", err)
	}
	if err := e.s.Approve(context.Background(), req.ID, "pinpad"); err != nil {
		t.Fatal(err)
	}
	r := e.result(waiting)
	if r.err != nil {
		t.Fatal(r.err)
	}
	e.mustCheck(r.tok.Access, req.Name)
}

// TestRequestsSignal: the channel signals the request's arrival and its end.
func TestRequestsSignal(t *testing.T) {
	e := newEnv(t, nil)
	ch := e.startRegister(context.Background(), "Sig", "192.0.2.1:1")
	req := e.waitPending("Sig")
	// Drain a signal left over from the arrival, if any, so the next one is the decision's.
	select {
	case <-e.s.Requests():
	default:
	}
	if err := e.s.Deny(context.Background(), req.ID, "pinpad"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.s.Requests():
	case <-time.After(20 * time.Second):
		t.Fatal("no signal after the decision")
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("pending after deny")
	}
	e.result(ch)
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TokenTTL = time.Hour })
	tok := e.registered("Kassa5")
	e.clk.add(time.Hour - time.Second)
	e.mustCheck(tok.Access, "Kassa5")
	e.clk.add(time.Second)
	if name, err := e.s.Check(tok.Access); err != ErrExpired || name != "Kassa5" {
		t.Fatalf("at expiry: %q, %v", name, err)
	}
	// An expired access token still revokes.
	e.clk.add(48 * time.Hour)
	tok2, err := e.s.Revoke(context.Background(), "Kassa5", tok.Refresh, tok.Access)
	if err != nil {
		t.Fatal(err)
	}
	e.mustCheck(tok2.Access, "Kassa5")
	e.checkErr(tok.Access, ErrSuperseded)
	// A replaced token is remembered for SupersededTTL, then forgotten.
	e.clk.add(SupersededTTL - time.Second)
	e.checkErr(tok.Access, ErrSuperseded)
	e.clk.add(time.Second)
	e.checkErr(tok.Access, ErrUnknownToken)
	e.checkErr(tok2.Access, ErrExpired)
	if _, err := e.s.Revoke(context.Background(), "Kassa5", tok.Refresh, tok.Access); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("revoke with a forgotten token: %v", err)
	}
}

func TestReRegister(t *testing.T) {
	e := newEnv(t, nil)
	old := e.registered("Kassa6")
	other := e.registered("Other")
	e.clk.add(time.Minute)
	tok := e.registered("Kassa6")
	e.checkErr(old.Access, ErrSuperseded)
	e.mustCheck(tok.Access, "Kassa6")
	e.mustCheck(other.Access, "Other")
	if _, err := e.s.Revoke(context.Background(), "Kassa6", old.Refresh, tok.Access); !errors.Is(err, ErrWrongRefresh) {
		t.Fatalf("old refresh after re-registration: %v", err)
	}
	list := e.s.List()
	if len(list) != 2 || list[0].Name != "Kassa6" || !list[0].Registered.Equal(t0.Add(time.Minute)) {
		t.Fatalf("List = %+v", list)
	}
}

func TestRevokeErrors(t *testing.T) {
	e := newEnv(t, nil)
	a := e.registered("A")
	b := e.registered("B")
	ctx := context.Background()
	for _, c := range []struct {
		name, refresh, access string
		want                  error
	}{
		{"A", "", a.Access, ErrEmptyRefresh},
		{"A", a.Refresh, "", ErrNoToken},
		{"Nobody", a.Refresh, a.Access, ErrUnknownName},
		{"", a.Refresh, a.Access, ErrUnknownName},
		{"A", a.Refresh, b.Access, ErrUnknownToken}, // another register's token
		{"A", a.Refresh, "garbage", ErrUnknownToken},
		{"A", b.Refresh, a.Access, ErrWrongRefresh},
		{"A", "00000000000000000000000000000000", a.Access, ErrWrongRefresh},
	} {
		if _, err := e.s.Revoke(ctx, c.name, c.refresh, c.access); !errors.Is(err, c.want) {
			t.Errorf("Revoke(%q): %v, want %v", c.name, err, c.want)
		}
	}
	e.mustCheck(a.Access, "A")
	e.mustCheck(b.Access, "B")
	if n := len(e.audit.Find("ecr.revoke.refused")); n != 8 {
		t.Fatalf("%d refused events", n)
	}
	mustNotContain(t, e.audit, a.Access, a.Refresh, b.Access, b.Refresh)
}

func TestCheckErrors(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.registered("K")
	e.checkErr("", ErrNoToken)
	e.checkErr("x", ErrUnknownToken)
	e.checkErr(strings.ToUpper(tok.Access), ErrUnknownToken)
	e.checkErr(tok.Access+" ", ErrUnknownToken)
	e.checkErr(newToken(), ErrUnknownToken)
	e.mustCheck(tok.Access, "K")
}

func TestBadNames(t *testing.T) {
	e := newEnv(t, nil)
	for _, name := range []string{"", " Kassa", "Kassa ", "Kas\nsa", "Kas\tsa", "a\x00b",
		"\xff\xfe", strings.Repeat("x", MaxNameLen+1), strings.Repeat("ж", MaxNameLen+1), "\u200b"} {
		if _, err := e.s.Register(context.Background(), name, "r"); !errors.Is(err, ErrBadName) {
			t.Errorf("Register(%q): %v", name, err)
		}
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("a bad name became a request")
	}
	for _, name := range []string{"K", "Касса №1", "POS-01 (зал)", strings.Repeat("ж", MaxNameLen)} {
		if !ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
	e.registered(strings.Repeat("ж", MaxNameLen))
}

func TestRemove(t *testing.T) {
	e := newEnv(t, nil)
	old := e.registered("R")
	tok := e.registered("R")
	keep := e.registered("Keep")
	if err := e.s.Remove(context.Background(), "R"); err != nil {
		t.Fatal(err)
	}
	e.checkErr(tok.Access, ErrUnknownToken)
	e.checkErr(old.Access, ErrUnknownToken)
	e.mustCheck(keep.Access, "Keep")
	if err := e.s.Remove(context.Background(), "R"); !errors.Is(err, ErrUnknownName) {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := e.s.Revoke(context.Background(), "R", tok.Refresh, tok.Access); !errors.Is(err, ErrUnknownName) {
		t.Fatalf("Revoke after Remove: %v", err)
	}
	if rm := e.audit.Find("ecr.remove"); len(rm) != 1 || rm[0]["name"] != "R" {
		t.Fatalf("remove events %v", rm)
	}
	e.reopen()
	e.checkErr(tok.Access, ErrUnknownToken)
	if l := e.s.List(); len(l) != 1 || l[0].Name != "Keep" {
		t.Fatalf("List after reopen = %+v", l)
	}
}

// TestPersistence: tokens (current and replaced) survive a restart; a pending request does
// not.
func TestPersistence(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.TokenTTL = time.Hour })
	tok := e.registered("P")
	tok2, err := e.s.Revoke(context.Background(), "P", tok.Refresh, tok.Access)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.startRegister(context.Background(), "Waiting", "192.0.2.1:1")
	e.waitPending("Waiting")
	e.reopen()
	if r := e.result(ch); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("pending Register across Close: %v", r.err)
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("pending request persisted")
	}
	e.mustCheck(tok2.Access, "P")
	e.checkErr(tok.Access, ErrSuperseded)
	l := e.s.List()
	if len(l) != 1 || !l[0].Expires.Equal(tok2.Expires) || !l[0].Registered.Equal(t0) || !l[0].LastSeen.Equal(t0) {
		t.Fatalf("List after reopen = %+v", l)
	}
	e.clk.add(time.Hour)
	e.checkErr(tok2.Access, ErrExpired)
	tok3, err := e.s.Revoke(context.Background(), "P", tok2.Refresh, tok2.Access)
	if err != nil {
		t.Fatal(err)
	}
	e.mustCheck(tok3.Access, "P")
}

// TestHashesOnly: the database file holds the tokens' hashes and never the tokens, in hex or
// raw.
func TestHashesOnly(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.registered("H")
	tok2, err := e.s.Revoke(context.Background(), "H", tok.Refresh, tok.Access)
	if err != nil {
		t.Fatal(err)
	}
	other := e.registered("H2")
	e.close()
	raw, err := os.ReadFile(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{tok.Access, tok.Refresh, tok2.Access, tok2.Refresh, other.Access, other.Refresh} {
		bin, _ := hex.DecodeString(s)
		if bytes.Contains(raw, []byte(s)) || bytes.Contains(raw, bin) {
			t.Fatalf("token found in the database file")
		}
		// And the check above is looking at the right file: the hash is there.
		if h := sha256.Sum256([]byte(s)); !bytes.Contains(raw, h[:]) {
			t.Fatalf("hash of a current or replaced token missing from the database file")
		}
	}
}

// TestCorruptRecord: a damaged record shuts out only its own cash register, which may register
// again.
func TestCorruptRecord(t *testing.T) {
	e := newEnv(t, nil)
	good := e.registered("Good")
	e.registered("Bad")
	if err := e.db.Update(func(tx *store.Tx) error {
		b := tx.Bucket([]byte(BucketName))
		v := append([]byte(nil), b.Get([]byte("Bad"))...)
		v[len(v)-1] ^= 1
		return b.Put([]byte("Bad"), v)
	}); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	e.mustCheck(good.Access, "Good")
	if l := e.s.List(); len(l) != 1 || l[0].Name != "Good" {
		t.Fatalf("List = %+v", l)
	}
	tok := e.registered("Bad")
	e.reopen()
	e.mustCheck(tok.Access, "Bad")
}

// TestApproveNotSaved: when the tokens cannot be committed, neither Approve nor Register
// reports success and nothing is registered.
func TestApproveNotSaved(t *testing.T) {
	e := newEnv(t, nil)
	ch := e.startRegister(context.Background(), "F", "192.0.2.1:1")
	req := e.waitPending("F")
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	err := e.s.Approve(context.Background(), req.ID, "pinpad")
	if !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Fatalf("Approve: %v", err)
	}
	if r := e.result(ch); !errors.Is(r.err, berrors.ErrDatabaseNotOpen) || r.tok.Access != "" {
		t.Fatalf("Register: %+v", r)
	}
	if len(e.s.List()) != 0 {
		t.Fatal("registered without a commit")
	}
	if _, ok := e.s.Pending(); ok {
		t.Fatal("still pending")
	}
}

func TestClosedStore(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.registered("C")
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Register(context.Background(), "D", "r"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register: %v", err)
	}
	if _, err := e.s.Revoke(context.Background(), "C", tok.Refresh, tok.Access); !errors.Is(err, ErrClosed) {
		t.Fatalf("Revoke: %v", err)
	}
	e.mustCheck(tok.Access, "C")
}

// TestConcurrentRevoke: of many revokes with the same pair, exactly one wins; checks running
// meanwhile see the name or a replaced token, never anything else.
func TestConcurrentRevoke(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.registered("CR")
	const n = 8
	var wg sync.WaitGroup
	results := make(chan error, n)
	stop := make(chan struct{})
	var checkErr error
	var cmu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.s.Check(tok.Access); err != nil && err != ErrSuperseded {
				cmu.Lock()
				checkErr = err
				cmu.Unlock()
			}
		}
	}()
	var rw sync.WaitGroup
	winners := make(chan Tokens, n)
	for range n {
		rw.Add(1)
		go func() {
			defer rw.Done()
			t2, err := e.s.Revoke(context.Background(), "CR", tok.Refresh, tok.Access)
			if err == nil {
				winners <- t2
			}
			results <- err
		}()
	}
	rw.Wait()
	close(stop)
	wg.Wait()
	close(results)
	close(winners)
	ok, superseded := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrSuperseded):
			superseded++
		default:
			t.Fatalf("revoke: %v", err)
		}
	}
	if ok != 1 || superseded != n-1 {
		t.Fatalf("%d won, %d superseded", ok, superseded)
	}
	if checkErr != nil {
		t.Fatalf("concurrent Check: %v", checkErr)
	}
	e.mustCheck((<-winners).Access, "CR")
}

func TestFormatExpiry(t *testing.T) {
	if got := FormatExpiry(time.Date(2023, 3, 7, 15, 2, 56, 0, time.Local)); got != "Mar 7, 2023 15:02:56" {
		t.Fatalf("FormatExpiry = %q", got)
	}
	if got := FormatExpiry(time.Date(2023, 12, 25, 9, 5, 0, 0, time.Local)); got != "Dec 25, 2023 09:05:00" {
		t.Fatalf("FormatExpiry = %q", got)
	}
	// Shown in local time whatever zone the time carries.
	u := time.Date(2023, 3, 7, 15, 2, 56, 0, time.UTC)
	if got := FormatExpiry(u); got != u.Local().Format("Jan 2, 2006 15:04:05") {
		t.Fatalf("FormatExpiry(UTC) = %q", got)
	}
}

// TestSupersededBounded: a cash register revoking in a loop keeps at most maxOld replaced
// tokens; the oldest are forgotten (ErrUnknownToken), the recent ones still answer
// ErrSuperseded.
func TestSupersededBounded(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.registered("Loop")
	var olds []string
	for range maxOld + 3 {
		olds = append(olds, tok.Access)
		next, err := e.s.Revoke(context.Background(), "Loop", tok.Refresh, tok.Access)
		if err != nil {
			t.Fatal(err)
		}
		tok = next
	}
	e.reopen()
	for i, o := range olds {
		want := ErrSuperseded
		if i < len(olds)-maxOld {
			want = ErrUnknownToken
		}
		e.checkErr(o, want)
	}
	e.mustCheck(tok.Access, "Loop")
}
