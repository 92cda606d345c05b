package receipt_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/posagent/posagent/agent/receipt"
	"github.com/posagent/posagent/agent/termconfig"
)

func TestPlan(t *testing.T) {
	type A = receipt.Action
	mp := A{receipt.CopyMerchant, receipt.DeliverPrint}
	me := A{receipt.CopyMerchant, receipt.DeliverElectronic}
	cp := A{receipt.CopyCustomer, receipt.DeliverPrint}
	ca := A{receipt.CopyCustomer, receipt.DeliverAsk}
	merchantModes := []termconfig.CopyMode{termconfig.CopyPrint, termconfig.CopyElectronic, termconfig.CopyBoth, "", "bogus"}
	customerModes := []termconfig.CopyMode{termconfig.CopyPrint, termconfig.CopyAsk, termconfig.CopyNone, "", "bogus"}
	merchantWant := map[termconfig.CopyMode][]A{
		termconfig.CopyPrint: {mp}, termconfig.CopyElectronic: {me}, termconfig.CopyBoth: {mp, me}, "": {mp}, "bogus": {mp},
	}
	customerWant := map[termconfig.CopyMode][]A{
		termconfig.CopyPrint: {cp}, termconfig.CopyAsk: {ca}, termconfig.CopyNone: nil, "": {cp}, "bogus": {cp},
	}
	for _, mm := range merchantModes {
		for _, cm := range customerModes {
			for _, printDeclined := range []bool{false, true} {
				for _, declined := range []bool{false, true} {
					p := termconfig.PrintProfile{MerchantCopy: mm, CustomerCopy: cm, PrintDeclined: printDeclined}
					got := receipt.Plan(p, declined)
					want := slices.Concat(merchantWant[mm], customerWant[cm])
					if declined && !printDeclined {
						want = nil
						if mm == termconfig.CopyElectronic || mm == termconfig.CopyBoth {
							want = []A{me}
						}
					}
					if !slices.Equal(got, want) {
						t.Errorf("merchant %q customer %q printDeclined %v declined %v: %v, want %v",
							mm, cm, printDeclined, declined, got, want)
					}
				}
			}
		}
	}
	// The factory profile: both copies printed, declined ones too.
	d := termconfig.Default().PrintProfile
	if got := fmt.Sprint(receipt.Plan(d, true)); got != fmt.Sprint([]A{mp, cp}) {
		t.Errorf("factory profile, declined: %v", got)
	}
}
