package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/posagent/posagent/agent/ecr/ecrclient"
	"github.com/posagent/posagent/board/sim/cardemu"
)

// The cash-register side of the demo: where the agent's /v2 API listens, and the simulated
// cardholder who taps a card whenever the terminal asks for one.

const (
	defaultECRAddr = "127.0.0.1:8080" // what `posagent ecr` calls without -url
	defaultTapCard = "unionpay-debit"
	demoPayAmount  = 1500 // whole tenge, as the printed example pays
)

// errECRAddr: the -ecr address is not host:port.
var errECRAddr = errors.New("cash-register API address")

// ecrListen settles where the agent's cash-register API listens. The address is tried
// here, before the agent starts, so that a busy port is reported by name and the demo moves to
// a free port on the same host instead of leaving the agent retrying in its log. note is
// what to tell the user ("" when the address was free).
func ecrListen(addr string) (got, note string, err error) {
	if addr == "" {
		addr = defaultECRAddr
	}
	got, note, err = freeAddr(addr, "The cash-register API", "-ecr")
	if err != nil {
		return "", "", fmt.Errorf("%w %w", errECRAddr, err)
	}
	return got, note, nil
}

// freeAddr returns addr when it can be listened on, else a free port on the same host and a
// note saying so (what listens there, and the flag that chooses the address).
func freeAddr(addr, what, flag string) (got, note string, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		got = ln.Addr().String()
		ln.Close()
		return got, "", nil
	}
	busy := err
	ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", "", fmt.Errorf("%s: %w; and no free port on %s: %w", addr, busy, host, err)
	}
	got = ln.Addr().String()
	ln.Close()
	return got, fmt.Sprintf("posdemo: %s is busy (%v): another program, or another demo, listens there.\n"+
		"  %s listens on %s instead (%s chooses the address).\n", addr, unwrapOp(busy), what, got, flag), nil
}

// unwrapOp shortens "listen tcp 127.0.0.1:8080: bind: address already in use" to its cause.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// ecrURL is the API's base URL for a listen address.
func ecrURL(addr string) string { return "http://" + addr }

// checkECR waits for the agent's cash-register API to answer /v2/deviceinfo.
func checkECR(ctx context.Context, url string, wait time.Duration) (ecrclient.DeviceInfo, error) {
	c := ecrclient.New(url, ecrclient.Options{Timeout: 3 * time.Second})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		di, err := c.DeviceInfo(ctx)
		if err == nil {
			return di, nil
		}
		select {
		case <-ctx.Done():
			return di, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// payHint is the client command that pays amount on the API at url, -url only when it is
// not the client's default.
func payHint(url string, amount int) string {
	flag := ""
	if url != ecrURL(defaultECRAddr) {
		flag = " -url " + url
	}
	return fmt.Sprintf("go run ./cmd/posagent ecr%s pay %d", flag, amount)
}

// cardholder is the simulated customer at the card reader: when the terminal switches the
// contactless field on (it waits for a card), they tap the demo card after a moment — the
// cash register shows WaitUser first, as with a person.
type cardholder struct {
	reader *cardemu.Emulator
	card   string        // tapped
	probe  string        // a card without contactless, used to ask whether the field is on
	delay  time.Duration // from the field coming on to the tap
	poll   time.Duration
	out    io.Writer
}

// newCardholder checks the card set: card must be contactless, and some card must not be
// (see fieldOn).
func newCardholder(reader *cardemu.Emulator, card string, delay time.Duration, out io.Writer) (*cardholder, error) {
	cards := reader.Cards()
	spec, ok := cards.Spec(card)
	if !ok {
		return nil, fmt.Errorf("card %q is not in the emulator's set %v", card, cards.Names())
	}
	if !slices.Contains(spec.Interfaces, "contactless") {
		return nil, fmt.Errorf("card %q cannot be tapped (interfaces %v)", card, spec.Interfaces)
	}
	h := &cardholder{reader: reader, card: card, delay: delay, poll: 150 * time.Millisecond, out: out}
	for _, n := range cards.Names() {
		if s, _ := cards.Spec(n); !slices.Contains(s.Interfaces, "contactless") {
			h.probe = n
			break
		}
	}
	if h.probe == "" {
		return nil, errors.New("every card of the set is contactless: the field cannot be watched")
	}
	return h, nil
}

// fieldOn says whether the terminal waits for a contactless card. The emulator has no
// accessor for it, but refuses a tap with ErrDisabled while the field is off, before it looks
// at the card; a card without an antenna is refused for that once the field is on — either
// way nothing reaches the terminal.
func (h *cardholder) fieldOn() bool {
	return !errors.Is(h.reader.Tap(h.probe), cardemu.ErrDisabled)
}

// run taps the card each time the terminal asks, until ctx ends.
func (h *cardholder) run(ctx context.Context) {
	for {
		if !h.await(ctx, true, 0) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.delay):
		}
		if !h.fieldOn() {
			continue // the customer paid by QR, or the cash register cancelled
		}
		if err := h.reader.Tap(h.card); err != nil {
			fmt.Fprintf(h.out, "posdemo: card %s not tapped: %v\n", h.card, err)
			continue
		}
		fmt.Fprintf(h.out, "posdemo: the customer taps card %s on the reader\n", h.card)
		// The field goes off once the card is read (the card leaves with it). A terminal still
		// waiting after a while did not get the card: it is tapped again.
		if !h.await(ctx, false, 20*time.Second) && ctx.Err() != nil {
			return
		}
	}
}

// await waits until the field is on (or off); false when ctx ends or limit (when > 0)
// passes first.
func (h *cardholder) await(ctx context.Context, on bool, limit time.Duration) bool {
	var deadline <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(h.poll)
	defer tick.Stop()
	for {
		if h.fieldOn() == on {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}
