package receipt

import "github.com/posagent/posagent/agent/termconfig"

// Delivery is how a copy goes out.
type Delivery string

// Deliveries.
const (
	DeliverPrint      Delivery = "print"      // print the slip
	DeliverElectronic Delivery = "electronic" // send the ERecord on up/receipt
	DeliverAsk        Delivery = "ask"        // ask the customer, print on yes
)

// Action is one copy to deliver after a transaction.
type Action struct {
	Copy     Copy
	Delivery Delivery
}

// Plan says which copies of a finished transaction's slip go out, in order: the merchant
// copy first (printed, sent electronically, or both — printed first), then the customer's
// (printed, offered, or none).
//
//	merchantCopy  print → print; electronic → send; both → print, send
//	customerCopy  print → print; ask → ask; none → nothing
//
// An empty mode is taken as print (the factory default) and an unknown one too — a slip
// too many is better than none. A declined transaction follows the same modes when
// printDeclined is set; otherwise nothing is printed or offered for it, and only the
// electronic merchant copy (if the mode sends one) still goes, so that the decline is on
// record. The bank copy is never planned; it is printed on request.
func Plan(p termconfig.PrintProfile, declined bool) []Action {
	paper := !declined || p.PrintDeclined
	var out []Action
	switch p.MerchantCopy {
	case termconfig.CopyElectronic:
		out = append(out, Action{CopyMerchant, DeliverElectronic})
	case termconfig.CopyBoth:
		if paper {
			out = append(out, Action{CopyMerchant, DeliverPrint})
		}
		out = append(out, Action{CopyMerchant, DeliverElectronic})
	default:
		if paper {
			out = append(out, Action{CopyMerchant, DeliverPrint})
		}
	}
	if !paper {
		return out
	}
	switch p.CustomerCopy {
	case termconfig.CopyNone:
	case termconfig.CopyAsk:
		out = append(out, Action{CopyCustomer, DeliverAsk})
	default:
		out = append(out, Action{CopyCustomer, DeliverPrint})
	}
	return out
}
