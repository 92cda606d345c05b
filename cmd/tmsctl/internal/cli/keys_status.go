package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

// keysStats is the keys section of an up/stats record (agent.KeysInfo), decoded leniently: a
// newer agent may say more.
type keysStats struct {
	Backend   string          `cbor:"backend" json:"backend"`
	ActiveKEK int             `cbor:"activeKek" json:"activeKek"`
	Keys      []keyStatsEntry `cbor:"keys" json:"keys"`
}

type keyStatsEntry struct {
	Role    string `cbor:"role" json:"role"`
	KCV     string `cbor:"kcv" json:"kcv"`
	Alg     string `cbor:"alg" json:"alg"`
	At      int64  `cbor:"at" json:"at"`
	Command string `cbor:"cmd" json:"command,omitempty"`
	Source  string `cbor:"src" json:"source"`
	Parent  string `cbor:"parent" json:"parent,omitempty"`
}

// errNoKeysSection: the stats carry no keys section (an agent without a key store).
var errNoKeysSection = errors.New("the stats have no keys section (an agent without a key store)")

// decodeKeysStats takes the keys section out of an up/stats body.
func decodeKeysStats(body []byte) (*keysStats, error) {
	// The strict decoder checks the record's limits; the sections other than keys stay raw.
	var whole map[string]cbor.RawMessage
	if err := tmsproto.Unmarshal(body, &whole); err != nil {
		return nil, err
	}
	raw, ok := whole["keys"]
	if !ok || len(raw) == 0 || raw[0] == 0xf6 { // absent or null
		return nil, errNoKeysSection
	}
	var ks keysStats
	if err := cbor.Unmarshal(raw, &ks); err != nil {
		return nil, fmt.Errorf("keys section: %w", err)
	}
	return &ks, nil
}

func runKeysStatus(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "keys status", "--device ID [--sign-key FILE] [flags]", `
Prints a terminal's key-loading state as its stats report it: the key backend (pinpad or
software), the active master key index (hostParameters.masterKeyIndex), and per loaded role its
KCV, algorithm, when and by which command it was loaded and, for a working key, the master key
it came under. Warns when the active master key is missing (the terminal then asks for keys
with up/req keys.request) or a working key belongs to another master key.

With --sign-key it asks for fresh stats (command stats.now) and prints that record; without,
it waits for the terminal's next stats record (hourly, and after every key change), so set
--wait to match. --json prints the keys section as one JSON object instead.

Exit status: 0 printed, 1 the stats carry no keys section, 2 usage or connection error, 3 no
stats within --wait.`)
	var cf connFlags
	cf.register(fs)
	var sf sendFlags
	sf.register(fs, false)
	asJSON := fs.Bool("json", false, "print the keys section as JSON")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if status, ok := sf.validate(fs); !ok {
		return status
	}
	var (
		key  tmsclient.SignKey
		seqs *tmsclient.SeqFile
		err  error
	)
	if sf.keyFile != "" {
		if key, seqs, err = sf.signer(); err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
	}
	c, err := cf.connect(ctx, fs, env)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, sf.wait)
	defer cancel()
	// Subscribed before asking, so the record stats.now makes is not missed.
	stats := make(chan tmsclient.Uplink, 64)
	sub, err := c.Watch(wctx, sf.device, []string{tmsproto.StreamStats}, func(u tmsclient.Uplink) {
		select {
		case stats <- u:
		case <-wctx.Done():
		}
	})
	if err != nil {
		return failf(env, waitStatus(err), "%v", err)
	}
	defer func() {
		cancel() // unblocks a handler waiting on a full channel
		sub.Stop()
	}()

	var minSeq uint64
	if sf.keyFile != "" {
		ack, status := sf.follow(wctx, env, c, key, seqs, "stats.now", nil, "stats.now")
		if status != ExitOK {
			return status
		}
		if ack.State != tmsproto.StateSucceeded {
			return printFinalAck(env, ack)
		}
		var res struct {
			StatsSeq uint64 `cbor:"statsSeq"`
		}
		if err := cbor.Unmarshal(ack.Result, &res); err == nil {
			minSeq = res.StatsSeq
		}
	} else {
		fmt.Fprintf(env.Stderr, "waiting up to %v for the next stats of %s\n", sf.wait, sf.device)
	}
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return failf(env, ExitUsage, "%v", ctx.Err())
			}
			return failf(env, ExitTimeout, "no stats from %s within %v", sf.device, sf.wait)
		case u := <-stats:
			if u.Err != nil {
				fmt.Fprintf(env.Stderr, "bad record on %s: %v\n", u.Topic, u.Err)
				continue
			}
			if u.Envelope.Seq < minSeq {
				continue // older than the record stats.now made
			}
			ks, err := decodeKeysStats(u.Envelope.Body)
			if errors.Is(err, errNoKeysSection) {
				return failf(env, ExitFailed, "%s: %v", sf.device, err)
			}
			if err != nil {
				fmt.Fprintf(env.Stderr, "bad stats record seq %d: %v\n", u.Envelope.Seq, err)
				continue
			}
			if *asJSON {
				out, err := json.Marshal(ks)
				if err != nil {
					return failf(env, ExitFailed, "%v", err)
				}
				fmt.Fprintf(env.Stdout, "%s\n", out)
				return ExitOK
			}
			printKeysStatus(env.Stdout, sf.device, u.Envelope.Seq, u.Envelope.TS, ks)
			return ExitOK
		}
	}
}

// printKeysStatus is what the TMS operator sees of a terminal's keys.
func printKeysStatus(w io.Writer, device string, seq uint64, tsMillis int64, ks *keysStats) {
	fmt.Fprintf(w, "%s: keys on the %s backend, active master key kek%d (stats seq %d of %s)\n",
		device, ks.Backend, ks.ActiveKEK, seq, time.UnixMilli(tsMillis).UTC().Format(time.RFC3339))
	keys := slices.Clone(ks.Keys)
	slices.SortFunc(keys, func(a, b keyStatsEntry) int { return roleOrder(a.Role) - roleOrder(b.Role) })
	active := fmt.Sprintf("kek%d", ks.ActiveKEK)
	if len(keys) == 0 {
		fmt.Fprintln(w, "no keys loaded")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tKCV\tALG\tUNDER\tLOADED\tSOURCE\tCOMMAND")
		for _, k := range keys {
			under, at, cmd := k.Parent, "-", k.Command
			if under == "" {
				under = "-"
			}
			if k.At > 0 {
				at = time.Unix(k.At, 0).UTC().Format(time.RFC3339)
			}
			if cmd == "" {
				cmd = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Role, k.KCV, k.Alg, under, at, k.Source, cmd)
		}
		tw.Flush()
	}
	if !slices.ContainsFunc(keys, func(k keyStatsEntry) bool { return k.Role == active }) {
		fmt.Fprintf(w, "warning: the active master key %s is not loaded: payments cannot use keys; the terminal asks for keys (up/req keys.request)\n", active)
	}
	for _, k := range keys {
		if k.Parent != "" && k.Parent != active {
			fmt.Fprintf(w, "warning: %s came under %s, not the active %s: it is not used until reloaded\n", k.Role, k.Parent, active)
		}
	}
}

// roleOrder sorts master keys first, then pik, mak, tdk, then anything else.
func roleOrder(role string) int {
	if i := kekIndexOf(role); i >= 0 {
		return i
	}
	switch role {
	case "pik":
		return 20
	case "mak":
		return 21
	case "tdk":
		return 22
	}
	return 30
}
