package integration

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"os"
	"syscall"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/payment"
)

// envPayCut makes the child agent run a payment load service (TestPaymentsPowerCuts):
//
//	load    purchases, voids of the latest purchase and settlements, until killed
//	settle  recovery only: owed reversals, any settlement in progress, a last settlement;
//	        then the child stops itself (SIGTERM)
const envPayCut = "POSAGENT_IT_PAY"

// cutCard is a card of hostsim.DefaultAccounts the load pays with.
type cutCard struct{ pan, expiry string }

var (
	// Domestic UnionPay cards and a Visa card: classified alike by the host and by the
	// terminal's BIN table.
	cutCards = []cutCard{
		{"6228480000000012344", "3112"},
		{"6250947000000014", "3006"},
		{"6212340000000001", "3101"},
		{"4761739001010010", "2912"},
	}
	// The Mastercard is foreign at the host but missing from the terminal's BIN table
	// (domestic there): a batch holding one settles unbalanced and goes through the upload.
	cutCardUnbalancing = cutCard{"5413330089020011", "2812"}
	// Expired (1912): the host declines it with 54.
	cutCardExpired = cutCard{"6228480000000056788", "1912"}
)

// addPayLoad adds the payment load service to the child's services when envPayCut asks for it.
func addPayLoad(opts *agent.Options) {
	mode := os.Getenv(envPayCut)
	if mode == "" {
		return
	}
	if opts.Services == nil {
		opts.Services = map[string]func(context.Context, *agent.Agent) error{}
	}
	opts.Services["payload"] = func(ctx context.Context, a *agent.Agent) error { return cutLoad(ctx, a, mode) }
}

func cutSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cutLoad drives the engine as a busy shop would. It writes nothing but what the engine
// writes; everything the test checks is the engine's own state and the host's ledger.
func cutLoad(ctx context.Context, a *agent.Agent, mode string) error {
	eng := a.Payments()
	// The payments service signs in at start (every start is after a power loss).
	for eng.Status().State != payment.Normal {
		if !cutSleep(ctx, 5*time.Millisecond) {
			return nil
		}
	}
	if mode == "settle" {
		for {
			_, err := eng.Settle(ctx, "")
			st := eng.Status()
			if err == nil && st.Reversals == 0 && !st.Settling {
				break
			}
			if !cutSleep(ctx, 50*time.Millisecond) {
				return nil
			}
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-ctx.Done()
		return nil
	}
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	for ctx.Err() == nil {
		st := eng.Status()
		var err error
		switch {
		case st.State != payment.Normal:
			cutSleep(ctx, 10*time.Millisecond)
			continue
		case st.Settling || (st.Txns > 0 && rng.IntN(10) == 0): // batches of ten or so
			_, err = eng.Settle(ctx, "")
		default:
			if id := cutLatestPurchase(eng); id != "" && rng.IntN(4) == 0 {
				_, err = eng.Do(ctx, payment.Request{Op: payment.OpVoid, OrigID: id})
				break
			}
			card := cutCards[rng.IntN(len(cutCards))]
			switch rng.IntN(30) {
			case 0:
				card = cutCardUnbalancing
			case 1:
				card = cutCardExpired
			}
			_, err = eng.Do(ctx, payment.Request{Op: payment.OpPurchase, Amount: 100 + rng.Int64N(99_900),
				Card: &payment.Card{PAN: card.pan, Expiry: card.expiry, Entry: "01"}})
		}
		if err != nil && !errors.Is(err, payment.ErrDeclined) && !errors.Is(err, payment.ErrInDoubt) {
			cutSleep(ctx, 20*time.Millisecond) // host trouble, reversal owed: the engine retries
		}
	}
	return nil
}

// cutLatestPurchase is the batch's most recent approved purchase, "" if none.
func cutLatestPurchase(eng *payment.Engine) string {
	txns, err := eng.Batch()
	if err != nil {
		return ""
	}
	for i := len(txns) - 1; i >= 0; i-- {
		if t := txns[i]; t.Op == payment.OpPurchase && t.State == payment.StateApproved {
			return t.ID
		}
	}
	return ""
}
