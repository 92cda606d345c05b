package operator

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/termconfig"
	bolt "go.etcd.io/bbolt"
)

func TestFactoryAccountsMustChange(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ops := e.s.List()
	if len(ops) != 2 || ops[0].Code != SupervisorCode || ops[0].Role != RoleSupervisor ||
		ops[1].Code != AdminCode || ops[1].Role != RoleAdmin || !ops[0].MustChange || !ops[1].MustChange {
		t.Fatalf("factory table %+v", ops)
	}
	if len(e.audit.Find("operator.factoryCreated")) != 1 {
		t.Fatal("no factoryCreated event")
	}
	// The factory supervisor gets a session that can only change its password.
	s, err := e.s.SignOn(ctx, SupervisorCode, FactorySupervisorPassword)
	wantErr(t, err, ErrMustChange)
	if !s.MustChange || s.ID == "" || s.Role != RoleSupervisor || s.CanTransact() {
		t.Fatalf("session %+v", s)
	}
	wantErr(t, e.s.Add(ctx, s, Operator{Code: "01", Role: RoleOperator}, "505050"), ErrMustChange)
	wantErr(t, e.s.Remove(ctx, s, "01"), ErrMustChange)
	wantErr(t, e.s.SetPassword(ctx, s, "01", "", "505050"), ErrMustChange)
	_, err = e.s.Authorise(ctx, termconfig.OpRefund, SupervisorCode, FactorySupervisorPassword)
	wantErr(t, err, ErrMustChange)
	// The factory password cannot be kept.
	wantErr(t, e.s.SetPassword(ctx, s, SupervisorCode, FactorySupervisorPassword, FactorySupervisorPassword), ErrWeakPassword)
	if err := e.s.SetPassword(ctx, s, SupervisorCode, FactorySupervisorPassword, supPW); err != nil {
		t.Fatal(err)
	}
	cur, ok := e.s.Current()
	if !ok || cur.MustChange || cur.ID != s.ID {
		t.Fatalf("session after the change %+v %v", cur, ok)
	}
	if err := e.s.Add(ctx, s, Operator{Code: "01", Role: RoleOperator}, "505050"); err != nil {
		t.Fatal(err)
	}
	// The administrator too.
	wantErr(t, e.s.CheckAdmin(ctx, FactoryAdminPassword), ErrMustChange)
	a := e.admin()
	if a.MustChange || a.Role != RoleAdmin || a.CanTransact() {
		t.Fatalf("admin session %+v", a)
	}
	if err := e.s.CheckAdmin(ctx, adminPW); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.SignOn(ctx, AdminCode, FactoryAdminPassword); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old factory password: %v", err)
	}
}

func TestBadCredentialsGiveNoHint(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	_, errPW := e.s.SignOn(ctx, "01", "999999")
	_, errCode := e.s.SignOn(ctx, "77", "135790")
	_, errShape := e.s.SignOn(ctx, "135790", "01") // fields swapped
	for _, err := range []error{errPW, errCode, errShape} {
		wantErr(t, err, ErrBadCredentials)
		if err.Error() != errPW.Error() {
			t.Fatalf("errors differ: %q vs %q", err, errPW)
		}
	}
	if op, _ := e.s.Get("01"); op.Failures != 1 {
		t.Fatalf("failures %d", op.Failures)
	}
	if _, ok := e.s.Get("77"); ok {
		t.Fatal("an unknown code created an account")
	}
	for _, f := range e.audit.Find("operator.authFailed") {
		if f["code"] == "135790" {
			t.Fatal("the audit echoed a typed value that is not a code")
		}
	}
	// A success clears the count.
	e.signOn("01", "135790")
	if op, _ := e.s.Get("01"); op.Failures != 0 {
		t.Fatalf("failures after success %d", op.Failures)
	}
}

func TestLockoutAndExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	_, err := e.s.SignOn(ctx, "01", "1111")
	wantErr(t, err, ErrBadCredentials)
	_, err = e.s.SignOn(ctx, "01", "2222")
	wantErr(t, err, ErrBadCredentials)
	// The count is durable.
	e.reopen()
	if op, _ := e.s.Get("01"); op.Failures != 2 {
		t.Fatalf("failures after reopen %d", op.Failures)
	}
	_, err = e.s.SignOn(ctx, "01", "3333")
	wantErr(t, err, ErrLockedOut)
	if len(e.audit.Find("operator.lockedOut")) != 1 {
		t.Fatal("no lockedOut event")
	}
	op, _ := e.s.Get("01")
	if op.LockedUntil != t0.Add(DefaultLockout).Unix() {
		t.Fatalf("locked until %d", op.LockedUntil)
	}
	// Locked: even the right password is refused, and the lock survives a restart.
	_, err = e.s.SignOn(ctx, "01", "135790")
	wantErr(t, err, ErrLockedOut)
	e.reopen()
	e.clk.add(DefaultLockout - time.Second)
	_, err = e.s.SignOn(ctx, "01", "135790")
	wantErr(t, err, ErrLockedOut)
	_, err = e.s.Verify(ctx, "01", "135790")
	wantErr(t, err, ErrLockedOut)
	// Expired: a fresh set of attempts.
	e.clk.add(time.Second)
	s := e.signOn("01", "135790")
	if !s.CanTransact() {
		t.Fatalf("session %+v", s)
	}
	if op, _ := e.s.Get("01"); op.Failures != 0 || op.LockedUntil != 0 {
		t.Fatalf("after expiry %+v", op)
	}
	// A lock-out that ran out gives maxPasswordAttempts again.
	e.setPolicy(func(p *termconfig.CashierProfile) { p.MaxPasswordAttempts = 5 })
	for range 4 {
		_, err := e.s.SignOn(ctx, "01", "0000")
		wantErr(t, err, ErrBadCredentials)
	}
	_, err = e.s.SignOn(ctx, "01", "0000")
	wantErr(t, err, ErrLockedOut)
}

func TestLockoutOptionAndReset(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	for range 3 {
		_, _ = e.s.SignOn(ctx, "01", "0000")
	}
	_, err := e.s.SignOn(ctx, "01", "135790")
	wantErr(t, err, ErrLockedOut)
	// The supervisor's reset unlocks at once, with a password to change.
	sup := e.supervisor()
	if err := e.s.SetPassword(ctx, sup, "01", "", "864200"); err != nil {
		t.Fatal(err)
	}
	if len(e.audit.Find("operator.passwordReset")) != 1 {
		t.Fatal("no passwordReset event")
	}
	s, err := e.s.SignOn(ctx, "01", "864200")
	wantErr(t, err, ErrMustChange)
	if s.CanTransact() {
		t.Fatal("a reset password's session transacts")
	}
	if err := e.s.SetPassword(ctx, s, "01", "864200", "135792"); err != nil {
		t.Fatal(err)
	}
	if cur, _ := e.s.Current(); !cur.CanTransact() {
		t.Fatalf("after the change %+v", cur)
	}
}

func TestCapacity(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sup := e.supervisor()
	add := func(code string) error {
		return e.s.Add(ctx, sup, Operator{Code: code, Role: RoleOperator}, "505050")
	}
	// Fewer than 10 configured still means 10.
	e.setPolicy(func(p *termconfig.CashierProfile) { p.MaxOperators = 3 })
	for i := 1; i <= MinOperators; i++ {
		if err := add(fmt.Sprintf("%02d", i)); err != nil {
			t.Fatalf("operator %d: %v", i, err)
		}
	}
	wantErr(t, add("11"), ErrCapacity)
	// The configured maximum above 10 is honoured, and enforced.
	e.setPolicy(func(p *termconfig.CashierProfile) { p.MaxOperators = 12 })
	if err := add("11"); err != nil {
		t.Fatal(err)
	}
	if err := add("12"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, add("13"), ErrCapacity)
	// All of them persist and sign on.
	e.reopen()
	n := 0
	for _, op := range e.s.List() {
		if op.Role == RoleOperator {
			n++
			if _, err := e.s.SignOn(ctx, op.Code, "505050"); !errors.Is(err, ErrMustChange) {
				t.Fatalf("%s: %v", op.Code, err)
			}
		}
	}
	if n != 12 {
		t.Fatalf("%d operators after reopen", n)
	}
	// Supervisors are bounded separately.
	a := e.admin()
	for i := 1; i < MaxSupervisors; i++ {
		if err := e.s.Add(ctx, a, Operator{Code: fmt.Sprintf("%d", 50+i), Role: RoleSupervisor}, "505050"); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, e.s.Add(ctx, a, Operator{Code: "60", Role: RoleSupervisor}, "505050"), ErrCapacity)
}

func TestRolesAndCodes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	op := e.signOn("01", "135790")
	if !op.CanTransact() || !CanTransact(RoleOperator) || CanTransact(RoleSupervisor) || CanTransact(RoleAdmin) {
		t.Fatal("CanTransact")
	}
	// An operator manages nobody.
	wantErr(t, e.s.Add(ctx, op, Operator{Code: "02", Role: RoleOperator}, "505050"), ErrForbidden)
	wantErr(t, e.s.SetPassword(ctx, op, SupervisorCode, "", "505050"), ErrForbidden)
	sup := e.supervisor()
	// A stale session (replaced) changes nothing.
	wantErr(t, e.s.Add(ctx, op, Operator{Code: "02", Role: RoleOperator}, "505050"), ErrNoSession)
	// A supervisor adds operators only.
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "02", Role: RoleSupervisor}, "505050"), ErrForbidden)
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "02", Role: RoleAdmin}, "505050"), ErrInvalid)
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "02", Role: "cashier"}, "505050"), ErrInvalid)
	for _, code := range []string{"", "1", "1234", "a1", "0x", " 1", "٣٣"} {
		wantErr(t, e.s.Add(ctx, sup, Operator{Code: code, Role: RoleOperator}, "505050"), ErrInvalid)
	}
	for _, code := range []string{AdminCode, SupervisorCode} {
		wantErr(t, e.s.Add(ctx, sup, Operator{Code: code, Role: RoleOperator}, "505050"), ErrInvalid)
	}
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "02", Role: RoleOperator, Name: "bad\x00name"}, "505050"), ErrInvalid)
	// Codes are unique, also as field 63 carries them ("01" = "001").
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "01", Role: RoleOperator}, "505050"), ErrExists)
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "001", Role: RoleOperator}, "505050"), ErrExists)
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "099", Role: RoleOperator}, "505050"), ErrExists)
	if err := e.s.Add(ctx, sup, Operator{Code: "123", Role: RoleOperator, Name: "Айгерим"}, "505050"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.s.Remove(ctx, sup, "55"), ErrNotFound)
	wantErr(t, e.s.Remove(ctx, sup, AdminCode), ErrForbidden)
	wantErr(t, e.s.Remove(ctx, sup, SupervisorCode), ErrForbidden)
	if err := e.s.Remove(ctx, sup, "123"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.s.Get("123"); ok {
		t.Fatal("removed operator still listed")
	}
	// The administrator manages supervisors, not operators.
	a := e.admin()
	wantErr(t, e.s.Add(ctx, a, Operator{Code: "02", Role: RoleOperator}, "505050"), ErrForbidden)
	wantErr(t, e.s.Remove(ctx, a, "01"), ErrForbidden)
	wantErr(t, e.s.SetPassword(ctx, a, "01", "", "505050"), ErrForbidden)
	wantErr(t, e.s.Remove(ctx, a, SupervisorCode), ErrForbidden) // the last supervisor
	wantErr(t, e.s.Remove(ctx, a, AdminCode), ErrForbidden)
	wantErr(t, e.s.Add(ctx, a, Operator{Code: AdminCode, Role: RoleSupervisor}, "505050"), ErrInvalid)
	if err := e.s.Add(ctx, a, Operator{Code: "88", Role: RoleSupervisor}, "505050"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Remove(ctx, a, SupervisorCode); err != nil {
		t.Fatal(err)
	}
	// "00" is a supervisor's code only, and free again for one.
	if err := e.s.Add(ctx, a, Operator{Code: SupervisorCode, Role: RoleSupervisor}, "505050"); err != nil {
		t.Fatal(err)
	}
	if len(e.audit.Find("operator.added")) != 4 || len(e.audit.Find("operator.removed")) != 2 {
		t.Fatalf("audit %+v", e.audit.All())
	}
}

func TestRemoveSignedOnOperator(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	e.signOn("01", "135790")
	// The supervisor signing on replaces the operator's session, so the operator is no longer
	// signed on and may go. (One person at a time at the terminal.)
	sup := e.supervisor()
	if cur, _ := e.s.Current(); cur.Code != SupervisorCode {
		t.Fatalf("current %+v", cur)
	}
	wantErr(t, e.s.SetDisabled(ctx, sup, SupervisorCode, true), ErrForbidden)
	if err := e.s.SetDisabled(ctx, sup, "01", true); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.SignOn(ctx, "01", "135790")
	wantErr(t, err, ErrForbidden)
	_, err = e.s.SignOn(ctx, "01", "000000")
	wantErr(t, err, ErrBadCredentials) // no hint without the right password
	sup = e.supervisor()
	if err := e.s.SetDisabled(ctx, sup, "01", false); err != nil {
		t.Fatal(err)
	}
	if op, _ := e.s.Get("01"); op.Disabled {
		t.Fatal("still disabled")
	}
	if err := e.s.Remove(ctx, sup, "01"); err != nil {
		t.Fatal(err)
	}
}

func TestPasswordRules(t *testing.T) {
	for _, tc := range []struct {
		pw  string
		min int
		ok  bool
	}{
		{"135790", 4, true}, {"1357", 4, true}, {"135790246813", 4, true},
		{"135", 4, false}, {"1357902468135", 4, false}, {"13a7", 4, false}, {"13 7", 4, false},
		{"１３５７", 4, false}, {"", 4, false}, {"0000", 4, false}, {"999999", 4, false},
		{"1234", 4, false}, {"3456789", 4, false}, {"9876", 4, false}, {"13579", 6, false},
		{"135790", 6, true},
	} {
		err := checkPassword(tc.pw, tc.min)
		if (err == nil) != tc.ok {
			t.Errorf("%q min %d: %v", tc.pw, tc.min, err)
		}
		if err != nil && !errors.Is(err, ErrWeakPassword) {
			t.Errorf("%q: %v is not ErrWeakPassword", tc.pw, err)
		}
	}
	// The minimum comes from the policy.
	e := newEnv(t)
	ctx := t.Context()
	e.setPolicy(func(p *termconfig.CashierProfile) { p.PasswordMinLength = 6 })
	sup := e.supervisor()
	wantErr(t, e.s.Add(ctx, sup, Operator{Code: "01", Role: RoleOperator}, "13579"), ErrWeakPassword)
	if err := e.s.Add(ctx, sup, Operator{Code: "01", Role: RoleOperator}, "135790"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.s.SetPassword(ctx, sup, SupervisorCode, supPW, "24680"), ErrWeakPassword)
}

func TestSetPassword(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	e.addOperator("02", "135791")
	op := e.signOn("01", "135790")
	// Own password: the old one is needed, and a wrong one is counted.
	wantErr(t, e.s.SetPassword(ctx, op, "01", "", "864200"), ErrBadCredentials)
	wantErr(t, e.s.SetPassword(ctx, op, "01", "999999", "864200"), ErrBadCredentials)
	if o, _ := e.s.Get("01"); o.Failures != 2 {
		t.Fatalf("failures %d", o.Failures)
	}
	wantErr(t, e.s.SetPassword(ctx, op, "01", "135790", "135790"), ErrWeakPassword)
	if err := e.s.SetPassword(ctx, op, "01", "135790", "864200"); err != nil {
		t.Fatal(err)
	}
	if o, _ := e.s.Get("01"); o.Failures != 0 || o.MustChange {
		t.Fatalf("after change %+v", o)
	}
	// Not someone else's.
	wantErr(t, e.s.SetPassword(ctx, op, "02", "", "864200"), ErrForbidden)
	_ = e.s.SignOff(ctx, op)
	wantErr(t, e.s.SetPassword(ctx, op, "01", "864200", "864202"), ErrNoSession)
	_, err := e.s.SignOn(ctx, "01", "135790")
	wantErr(t, err, ErrBadCredentials)
	e.signOn("01", "864200")
	// The supervisor resets an operator's, not the administrator's; the administrator resets
	// the supervisor's.
	sup := e.supervisor()
	wantErr(t, e.s.SetPassword(ctx, sup, AdminCode, "", "864200"), ErrForbidden)
	wantErr(t, e.s.SetPassword(ctx, sup, "77", "", "864200"), ErrNotFound)
	if err := e.s.SetPassword(ctx, sup, "02", "", "864200"); err != nil {
		t.Fatal(err)
	}
	a := e.admin()
	if err := e.s.SetPassword(ctx, a, SupervisorCode, "", "975310"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.SignOn(ctx, SupervisorCode, "975310"); !errors.Is(err, ErrMustChange) {
		t.Fatalf("reset supervisor: %v", err)
	}
	// Persisted.
	e.reopen()
	if _, err := e.s.SignOn(ctx, "02", "864200"); !errors.Is(err, ErrMustChange) {
		t.Fatalf("after reopen: %v", err)
	}
	e.signOn("01", "864200")
}

func TestSessionTimeout(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	s := e.signOn("01", "135790")
	if cur, ok := e.s.Current(); !ok || cur.ID != s.ID || cur.Code != "01" || cur.Since != t0.Unix() {
		t.Fatalf("current %+v %v", cur, ok)
	}
	// Default 300 s of inactivity; Touch restarts the count.
	e.clk.add(299 * time.Second)
	e.s.Touch(s)
	e.clk.add(299 * time.Second)
	if _, ok := e.s.Current(); !ok {
		t.Fatal("expired despite Touch")
	}
	e.clk.add(2 * time.Second)
	if _, ok := e.s.Current(); ok {
		t.Fatal("not expired")
	}
	found := false
	for _, f := range e.audit.Find("operator.signOff") {
		found = found || f["reason"] == "timeout"
	}
	if !found {
		t.Fatal("no timeout event")
	}
	e.s.Touch(s) // does not revive it
	if _, ok := e.s.Current(); ok {
		t.Fatal("revived")
	}
	wantErr(t, e.s.SetPassword(ctx, s, "01", "135790", "864200"), ErrNoSession)
	// The policy sets the timeout; 0 is never.
	e.setPolicy(func(p *termconfig.CashierProfile) { p.SessionTimeoutSec = 0 })
	s = e.signOn("01", "135790")
	e.clk.add(72 * time.Hour)
	if _, ok := e.s.Current(); !ok {
		t.Fatal("expired with timeout 0")
	}
	e.setPolicy(func(p *termconfig.CashierProfile) { p.SessionTimeoutSec = 30 })
	e.s.Touch(s)
	e.clk.add(31 * time.Second)
	if _, ok := e.s.Current(); ok {
		t.Fatal("not expired after 30 s")
	}
	// Sign-off, and the session is not persisted.
	s = e.signOn("01", "135790")
	if err := e.s.SignOff(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.s.Current(); ok {
		t.Fatal("still signed on")
	}
	if err := e.s.SignOff(ctx, s); err != nil {
		t.Fatal(err)
	}
	e.signOn("01", "135790")
	e.reopen()
	if _, ok := e.s.Current(); ok {
		t.Fatal("a session survived a restart")
	}
}

func TestSupervisorApproval(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// Default: refund and void.
	for _, op := range termconfig.Operations() {
		want := op == termconfig.OpRefund || op == termconfig.OpVoid
		if e.s.NeedsApproval(op) != want {
			t.Fatalf("NeedsApproval(%s) = %v", op, !want)
		}
	}
	e.setPolicy(func(p *termconfig.CashierProfile) {
		p.SupervisorApproval = []termconfig.Operation{termconfig.OpRefund, termconfig.OpPreAuthCompletionVoid}
	})
	if e.s.NeedsApproval(termconfig.OpVoid) || !e.s.NeedsApproval(termconfig.OpPreAuthCompletionVoid) {
		t.Fatal("policy list not used")
	}
	e.setPolicy(func(p *termconfig.CashierProfile) { p.SupervisorApproval = nil })
	if !e.s.NeedsApproval(termconfig.OpVoid) {
		t.Fatal("empty list is not the default")
	}

	e.supervisor()
	e.addOperator("01", "135790")
	e.signOn("01", "135790")
	a, err := e.s.Authorise(ctx, termconfig.OpRefund, SupervisorCode, supPW)
	if err != nil {
		t.Fatal(err)
	}
	if a.Supervisor != SupervisorCode || a.Operator != "01" || a.Op != termconfig.OpRefund || a.ID == "" || a.At != t0.Unix() {
		t.Fatalf("approval %+v", a)
	}
	ev := e.audit.Find("operator.approved")
	if len(ev) != 1 || ev[0]["supervisor"] != SupervisorCode || ev[0]["op"] != "refund" || ev[0]["id"] != a.ID {
		t.Fatalf("approval events %+v", ev)
	}
	// The operator stays signed on.
	if cur, _ := e.s.Current(); cur.Code != "01" {
		t.Fatalf("current %+v", cur)
	}
	// Only a supervisor approves.
	_, err = e.s.Authorise(ctx, termconfig.OpVoid, "01", "135790")
	wantErr(t, err, ErrForbidden)
	e.admin()
	_, err = e.s.Authorise(ctx, termconfig.OpVoid, AdminCode, adminPW)
	wantErr(t, err, ErrForbidden)
	// Wrong passwords are counted and lock the supervisor out.
	for range 2 {
		_, err = e.s.Authorise(ctx, termconfig.OpVoid, SupervisorCode, "000000")
		wantErr(t, err, ErrBadCredentials)
	}
	_, err = e.s.Authorise(ctx, termconfig.OpVoid, SupervisorCode, "000000")
	wantErr(t, err, ErrLockedOut)
	_, err = e.s.Authorise(ctx, termconfig.OpVoid, SupervisorCode, supPW)
	wantErr(t, err, ErrLockedOut)
	_, err = e.s.SignOn(ctx, SupervisorCode, supPW)
	wantErr(t, err, ErrLockedOut)
}

func TestCheckAdminAndVerify(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.admin()
	if err := e.s.CheckAdmin(ctx, adminPW); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.s.CheckAdmin(ctx, "13579"), ErrBadCredentials)
	if len(e.audit.Find("operator.adminChecked")) != 1 {
		t.Fatal("no adminChecked event")
	}
	wantErr(t, e.s.CheckAdmin(ctx, "13579"), ErrBadCredentials)
	wantErr(t, e.s.CheckAdmin(ctx, "13579"), ErrLockedOut)
	wantErr(t, e.s.CheckAdmin(ctx, adminPW), ErrLockedOut)
	e.clk.add(DefaultLockout)
	if err := e.s.CheckAdmin(ctx, adminPW); err != nil {
		t.Fatal(err)
	}
	// Verify (unlocking a locked terminal) checks without signing on.
	e.addOperator("01", "135790")
	op, err := e.s.Verify(ctx, "01", "135790")
	if err != nil || op.Code != "01" || op.Role != RoleOperator {
		t.Fatalf("verify %+v %v", op, err)
	}
	if _, ok := e.s.Current(); ok {
		t.Fatal("Verify signed on")
	}
	_, err = e.s.Verify(ctx, "01", "135799")
	wantErr(t, err, ErrBadCredentials)
	_, err = e.s.Verify(ctx, SupervisorCode, FactorySupervisorPassword)
	wantErr(t, err, ErrBadCredentials) // changed by addOperator
}

func TestRehashOnSignOn(t *testing.T) {
	e := newEnv(t)
	e.addOperator("01", "135790")
	iter := func(code string) int {
		var r *record
		_ = e.db.View(func(tx *bolt.Tx) error {
			var err error
			r, err = decodeRecord([]byte(code), tx.Bucket([]byte(BucketName)).Get([]byte(code)))
			return err
		})
		return r.Hash.Iter
	}
	if iter("01") != MinIterations {
		t.Fatalf("iterations %d", iter("01"))
	}
	e.iter = 2 * MinIterations
	e.reopen()
	e.signOn("01", "135790")
	if iter("01") != 2*MinIterations {
		t.Fatalf("not re-hashed: %d", iter("01"))
	}
	if iter(AdminCode) != MinIterations {
		t.Fatal("an account not signed on was re-hashed")
	}
	e.signOn("01", "135790")
}

// TestFailedCommitChangesNothing: a change whose transaction does not commit leaves the table
// in memory and on disk as it was, and a failure that could not be counted is not reported
// as a plain wrong password.
func TestFailedCommitChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.supervisor()
	before := e.s.List()
	e.close()
	db, err := bolt.Open(e.dir+"/posagent.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{DB: db, Now: e.clk.now, Iterations: MinIterations, Logger: e.s.log}) // plain transactions
	if err != nil {
		t.Fatal(err)
	}
	sup, err := s.SignOn(ctx, SupervisorCode, supPW)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close() // every later transaction fails
	if err := s.Add(ctx, sup, Operator{Code: "01", Role: RoleOperator}, "505050"); err == nil {
		t.Fatal("Add committed on a closed database")
	}
	_, err = s.SignOn(ctx, SupervisorCode, "000000")
	if err == nil || errors.Is(err, ErrBadCredentials) {
		t.Fatalf("an uncounted failure was reported as a plain one: %v", err)
	}
	if !slices.Equal(before, s.List()) {
		t.Fatalf("table changed: %+v", s.List())
	}
	e.open()
	if !slices.Equal(before, e.s.List()) {
		t.Fatalf("stored table changed: %+v", e.s.List())
	}
}

func TestCorruptRecordRefused(t *testing.T) {
	e := newEnv(t)
	if err := e.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketName)).Put([]byte("01"), []byte{recordFormat, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	e.close()
	db, err := bolt.Open(e.dir+"/posagent.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(Options{DB: db, Iterations: MinIterations, Logger: e.s.log}); err == nil {
		t.Fatal("a corrupt record was accepted")
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.addOperator("01", "135790")
	e.addOperator("02", "135791")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				code, pw := "01", "135790"
				if (i+j)%2 == 1 {
					code, pw = "02", "135791"
				}
				s, err := e.s.SignOn(ctx, code, pw)
				if err != nil {
					t.Error(err)
					return
				}
				e.s.Touch(s)
				e.s.List()
				e.s.Current()
				_ = e.s.SignOff(ctx, s)
			}
		})
	}
	wg.Wait()
}

func TestDefaultIterations(t *testing.T) {
	n := DefaultIterations()
	switch runtime.GOARCH {
	case "arm":
		if n != IterationsSlow {
			t.Fatal(n)
		}
	case "amd64":
		if n != IterationsFast {
			t.Fatal(n)
		}
	}
	if n < MinIterations {
		t.Fatal(n)
	}
}
