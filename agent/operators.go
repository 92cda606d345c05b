package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/posagent/posagent/agent/audit"
	"github.com/posagent/posagent/agent/checkout"
	"github.com/posagent/posagent/agent/operator"
	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
)

// Errors of the operator rules around payments.
var (
	ErrOperatorRequired = errors.New("an operator must be signed on to transact")
	ErrApprovalRequired = errors.New("a supervisor's approval is required")
)

// approvalTTL is how long a supervisor's approval may wait for its operation.
const approvalTTL = 2 * time.Minute

// approvals are supervisors' approvals waiting for their operation: each is used once.
type approvals struct {
	mu sync.Mutex
	m  map[string]operator.Approval
}

// openOperators opens the operator table; its events are audit entries (up/log/audit).
func (a *Agent) openOperators() error {
	var err error
	a.ops, err = operator.Open(operator.Options{DB: a.db, Commit: a.commit, Logger: a.log,
		Policy: func() termconfig.CashierProfile { return a.term.Active().CashierProfile },
		Audit:  a.auditHook(audit.SourceOperator, "operator.")})
	a.approved.m = map[string]operator.Approval{}
	return err
}

// Operators is the operator table (sign-on, management, approvals).
func (a *Agent) Operators() *operator.Store { return a.ops }

// Authorise takes a supervisor's approval for one operation; its id goes into
// checkout.Sale.Approval and is used once, within two minutes.
func (a *Agent) Authorise(ctx context.Context, op payment.Op, code, password string) (string, error) {
	ap, err := a.ops.Authorise(ctx, op.Operation(), code, password)
	if err != nil {
		return "", err
	}
	id := ap.ID
	if id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	a.approved.mu.Lock()
	a.approved.m[id] = ap
	a.approved.mu.Unlock()
	return id, nil
}

// takeApproval consumes an approval for op.
func (a *Agent) takeApproval(id string, op payment.Op) bool {
	a.approved.mu.Lock()
	defer a.approved.mu.Unlock()
	ap, ok := a.approved.m[id]
	delete(a.approved.m, id)
	return ok && ap.Op == op.Operation() && time.Since(time.Unix(ap.At, 0)) <= approvalTTL
}

// operatorRules applies seed 004 §6.2 to a sale: with operator login on, an operator who may
// transact must be signed on (the supervisor and the administrator may not); operations the
// profile lists need a supervisor's approval.
func (a *Agent) operatorRules(s *checkout.Sale) error {
	if a.term.Active().CashierProfile.OperatorLogin {
		sess, ok := a.ops.Current()
		if !ok || !sess.CanTransact() {
			return ErrOperatorRequired
		}
		s.Operator = sess.Code
		a.ops.Touch(sess)
	}
	if a.ops.NeedsApproval(s.Op.Operation()) && !a.takeApproval(s.Approval, s.Op) {
		return fmt.Errorf("%w for %s", ErrApprovalRequired, s.Op)
	}
	return nil
}

// SetTestMode switches test transactions with the administrator's password (and an empty
// batch).
func (a *Agent) SetTestMode(ctx context.Context, adminPassword string, on bool) error {
	if err := a.ops.CheckAdmin(ctx, adminPassword); err != nil {
		return err
	}
	return a.pay.SetTestMode(ctx, on)
}

// Unlock puts a locked terminal back in service with an operator's or supervisor's password.
func (a *Agent) Unlock(ctx context.Context, code, password string) error {
	if _, err := a.ops.Verify(ctx, code, password); err != nil {
		return err
	}
	return a.pay.Unlock(ctx)
}
