package checkout

import (
	"testing"

	"github.com/posagent/posagent/agent/payment"
	"github.com/posagent/posagent/agent/termconfig"
)

// Money out of the account asks the PIN, money onto the card does not; voids as configured.
func TestNeedsPIN(t *testing.T) {
	doc := termconfig.Default()
	doc.HostParameters.PINRequiredForVoid = false
	withVoidPIN := termconfig.Default()
	withVoidPIN.HostParameters.PINRequiredForVoid = true
	for _, tc := range []struct {
		op           payment.Op
		want, onVoid bool
	}{
		{payment.OpPurchase, true, true},
		{payment.OpBalance, true, true},
		{payment.OpPreAuth, true, true},
		{payment.OpCashWithdrawal, true, true},
		{payment.OpTopUp, false, false},
		{payment.OpRefund, false, false},
		{payment.OpCompletion, false, false},
		{payment.OpVoid, false, true},
		{payment.OpPreAuthVoid, false, true},
		{payment.OpCompletionVoid, false, true},
	} {
		if got := needsPIN(tc.op, doc); got != tc.want {
			t.Errorf("%s: PIN %v, want %v", tc.op, got, tc.want)
		}
		if got := needsPIN(tc.op, withVoidPIN); got != tc.onVoid {
			t.Errorf("%s with pinRequiredForVoid: PIN %v, want %v", tc.op, got, tc.onVoid)
		}
	}
}

func TestStageString(t *testing.T) {
	want := map[Stage]string{StageWaitCard: "waitCard", StageCardRead: "cardRead", StageWaitPIN: "waitPIN",
		StageHost: "host", Stage(0): "Stage(0)", Stage(9): "Stage(9)"}
	for s, w := range want {
		if got := s.String(); got != w {
			t.Errorf("Stage(%d) = %q, want %q", int(s), got, w)
		}
	}
	// The stages are in the order an operation passes them.
	if !(StageWaitCard < StageCardRead && StageCardRead < StageWaitPIN && StageWaitPIN < StageHost) {
		t.Error("stages out of order")
	}
}
