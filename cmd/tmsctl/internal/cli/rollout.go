package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/rollout"
	"github.com/posagent/posagent/internal/tmsclient"
)

// runRollout dispatches "tmsctl rollout start|resume|status|stop".
func runRollout(ctx context.Context, env Env, args []string) int {
	const help = `Usage: tmsctl rollout <start|resume|status|stop> [flags]

  start    send one signed command to many terminals at a pace, following each to its final ack
  resume   continue a rollout that halted or was interrupted (optionally with a new ratio or pace)
  status   show a rollout's counts and each terminal's state (no broker needed)
  stop     halt a rollout; a running start or resume notices within a second

The state of every rollout is kept in the --db file (default rollout.db): a rollout survives
an interrupt or a crash of tmsctl, and "resume" sends the terminals still in flight the very
command they got before, never a second one. See docs/rollout.md.

"tmsctl rollout <subcommand> -h" describes the flags.
`
	return dispatch(ctx, env, "rollout", help, args, map[string]runFunc{
		"start":  runRolloutStart,
		"resume": runRolloutResume,
		"status": withoutCtx(runRolloutStatus),
		"stop":   withoutCtx(runRolloutStop),
	})
}

// Exit statuses of rollout start and resume (the shared ones, read this way):
//
//	ExitOK      every terminal final, not halted (some may have failed below the ratio)
//	ExitFailed  halted: failure ratio crossed, or stopped
//	ExitUsage   usage, input, broker or database error
//	ExitTimeout interrupted (signal) before the end; resume continues
const rolloutExitHelp = `Exit status: 0 every terminal final and not halted (see status for failures below the
ratio), 1 halted (failure ratio or stop), 2 usage, connection or database error, 3 interrupted
before the end (resume continues it).`

// rolloutFlags are what start and resume share: database, name, broker, key, limits.
type rolloutFlags struct {
	cf                     connFlags
	db, name               string
	keyFile, kid, seqFile  string
	rate, exp              string
	maxFailure             float64
	minSample, maxInFlight int
	timeout                time.Duration
}

func (rf *rolloutFlags) register(fs *flag.FlagSet) {
	rf.cf.register(fs)
	fs.StringVar(&rf.db, "db", "rollout.db", "rollout state `file` (bbolt)")
	fs.StringVar(&rf.name, "name", "", "rollout `name`: [A-Za-z0-9_.-]{1,64} (required)")
	fs.StringVar(&rf.keyFile, "sign-key", "", "private key `file` written by keygen (required)")
	fs.StringVar(&rf.kid, "kid", "", "key `id` to sign under (default: the key file name without .key)")
	fs.StringVar(&rf.seqFile, "seq-file", "", "`file` keeping the last seq per device (default: the key file with .seq.json for .key)")
	fs.StringVar(&rf.rate, "rate", "", "linear pace: terminals a minute, as `N/min` (or N/s, N/h)")
	fs.StringVar(&rf.exp, "exp", "", "exponential pace `STARTxFACTOR@EVERY`: 10x2@1m = 10, 20, 40 … terminals, a wave when the previous one is final and EVERY has passed")
	fs.Float64Var(&rf.maxFailure, "max-failure", 0.05, "halt when (failed+timed out)/finished exceeds this `ratio` (0..1; 1 never halts)")
	fs.IntVar(&rf.minSample, "min-sample", rollout.DefaultMinSample, "the ratio applies once this many terminals are finished")
	fs.DurationVar(&rf.timeout, "timeout", rollout.DefaultTimeout, "per terminal: from the send to its final ack")
	fs.IntVar(&rf.maxInFlight, "max-inflight", rollout.DefaultMaxInFlight, "at most this many terminals sent and not final")
}

func (rf *rolloutFlags) validate(fs *flag.FlagSet) (int, bool) {
	switch {
	case rf.name == "":
		return usageErr(fs, "--name is required"), false
	case rf.keyFile == "":
		return usageErr(fs, "--sign-key is required"), false
	case rf.rate != "" && rf.exp != "":
		return usageErr(fs, "--rate and --exp exclude each other"), false
	case !(rf.maxFailure >= 0 && rf.maxFailure <= 1):
		return usageErr(fs, "--max-failure must be within 0..1"), false
	case rf.minSample < 1:
		return usageErr(fs, "--min-sample must be at least 1"), false
	case rf.timeout <= 0:
		return usageErr(fs, "--timeout must be positive"), false
	case rf.maxInFlight < 1:
		return usageErr(fs, "--max-inflight must be at least 1"), false
	}
	if err := rollout.ValidName(rf.name); err != nil {
		return usageErr(fs, "%v", err), false
	}
	return 0, true
}

// pace reads --rate or --exp; set is false when neither is given.
func (rf *rolloutFlags) pace() (p rollout.Pace, set bool, err error) {
	switch {
	case rf.rate != "":
		p, err = rollout.ParseRate(rf.rate)
	case rf.exp != "":
		p, err = rollout.ParseWaves(rf.exp)
	default:
		return rollout.Pace{}, false, nil
	}
	return p, true, err
}

// engine loads the key, opens the store and connects: what running a rollout needs.
func (rf *rolloutFlags) engine(ctx context.Context, env Env, fs *flag.FlagSet, prog *rolloutProgress) (*rollout.Engine, *tmsclient.Client, int) {
	sf := sendFlags{keyFile: rf.keyFile, kid: rf.kid, seqFile: rf.seqFile}
	key, seqs, err := sf.signer()
	if err != nil {
		return nil, nil, failf(env, ExitUsage, "%v", err)
	}
	st, err := rollout.OpenStore(rf.db)
	if err != nil {
		return nil, nil, failf(env, ExitUsage, "%v", err)
	}
	c, err := rf.cf.connect(ctx, fs, env)
	if err != nil {
		return nil, nil, failf(env, ExitUsage, "%v", err)
	}
	log := rf.logger(env)
	eng := rollout.New(st, rollout.NewTMSSender(c), key, rollout.NewTMSAckSource(c, log), log,
		rollout.WithSeq(seqs), rollout.WithProgress(prog.update))
	return eng, c, 0
}

func (rf *rolloutFlags) logger(env Env) *slog.Logger {
	level := slog.LevelWarn
	if rf.cf.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
}

func runRolloutStart(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "rollout start", "--name N --kind K --sign-key FILE (--targets a,b | --targets-file F | --pattern GLOB) [flags]", `
Creates rollout N (command kind K with the body of --body or --body-cbor) for the targets,
then runs it: the command is signed for each terminal when its turn comes, committed to the
--db file, published, and followed through one ack subscription for all terminals. Without
--rate or --exp the only limit is --max-inflight.

Targets: --targets a,b,c; --targets-file with one id per line (# comments, blank lines and
commas allowed); or --pattern, a glob (path.Match: FS-0*, T-1??) over the terminals the broker
holds a retained up/online record of, online or not.

Halting: once --min-sample terminals are finished, a share of failed (failed or rejected) and
timed out terminals above --max-failure halts: nothing new is sent, the terminals in flight
are followed to their end. "tmsctl rollout resume" continues, with a higher --max-failure if
so decided.

Progress goes to stderr (a line redrawn on a terminal, else a line per change at most each
second); the final summary is one JSON line on stdout.

`+rolloutExitHelp)
	var rf rolloutFlags
	rf.register(fs)
	kind := fs.String("kind", "", "command `kind`: config.apply, ota.install, reboot … (required)")
	bodyArg := fs.String("body", "", "command body: JSON object `file`, or - for stdin (default: {})")
	bodyCBOR := fs.String("body-cbor", "", "command body: a `file` holding a CBOR map")
	targets := fs.String("targets", "", "comma-separated terminal `ids`")
	targetsFile := fs.String("targets-file", "", "`file` of terminal ids, one per line")
	pattern := fs.String("pattern", "", "`glob` over the terminals known from retained up/online records")
	discoverWait := fs.Duration("discover-wait", 2*time.Second, "with --pattern: stop collecting retained records after this long without a new one")
	expires := fs.Duration("expires", 0, "a signed command expires this long after it is signed (default: --timeout)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if status, ok := rf.validate(fs); !ok {
		return status
	}
	sources := 0
	for _, s := range []string{*targets, *targetsFile, *pattern} {
		if s != "" {
			sources++
		}
	}
	switch {
	case *kind == "":
		return usageErr(fs, "--kind is required")
	case sources != 1:
		return usageErr(fs, "give exactly one of --targets, --targets-file and --pattern")
	case *bodyArg != "" && *bodyCBOR != "":
		return usageErr(fs, "--body and --body-cbor exclude each other")
	case *expires < 0:
		return usageErr(fs, "--expires must not be negative")
	}
	pace, _, err := rf.pace()
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	body, err := readBody(env, *bodyArg)
	if err == nil && *bodyCBOR != "" {
		body, err = readCBORBody(*bodyCBOR)
	}
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	var ids []string
	switch {
	case *targets != "":
		ids = splitIDs(*targets)
	case *targetsFile != "":
		data, err := os.ReadFile(*targetsFile)
		if err != nil {
			return failf(env, ExitUsage, "targets: %v", err)
		}
		ids = parseTargets(string(data))
	}

	prog := newRolloutProgress(env)
	eng, c, status := rf.engine(ctx, env, fs, prog)
	if eng == nil {
		return status
	}
	defer c.Close()
	if *pattern != "" {
		ids, err = rollout.Discover(ctx, c, *pattern, *discoverWait)
		if err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		if len(ids) == 0 {
			return failf(env, ExitUsage, "no terminal known to the broker matches %q", *pattern)
		}
		fmt.Fprintf(env.Stderr, "%d terminals match %s\n", len(ids), *pattern)
	}
	plan := rollout.Plan{Name: rf.name, Kind: *kind, Body: body, Targets: ids, Pace: pace,
		MaxFailureRatio: rf.maxFailure, MinSample: rf.minSample, Timeout: rf.timeout, Expires: *expires, MaxInFlight: rf.maxInFlight}
	if err := eng.Create(plan); err != nil {
		if errors.Is(err, rollout.ErrExists) {
			return failf(env, ExitUsage, "%v in %s: \"tmsctl rollout resume -name %s\" continues it", err, rf.db, rf.name)
		}
		return failf(env, ExitUsage, "%v", err)
	}
	fmt.Fprintf(env.Stderr, "rollout %s: %s to %d terminals, pace %s, halt above %.3g failed after %d finished, timeout %v\n",
		rf.name, *kind, len(ids), pace, rf.maxFailure, rf.minSample, rf.timeout)
	sum, err := eng.Run(ctx, rf.name)
	return finishRollout(env, prog, rf.name, sum, err)
}

func runRolloutResume(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "rollout resume", "--name N --sign-key FILE [--max-failure R] [--rate P | --exp W] [flags]", `
Continues rollout N: clears a halt, applies the flags given here (the others keep the values
the rollout was started with), sends the terminals still in flight the command they got
before (the same bytes: the agent answers a repeat with its current or final ack), and goes on
with the pending ones. A new --rate or --exp starts its waves afresh. If the failure ratio is
still above --max-failure, the rollout halts again at once without sending anything.

`+rolloutExitHelp)
	var rf rolloutFlags
	rf.register(fs)
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if status, ok := rf.validate(fs); !ok {
		return status
	}
	pace, paceSet, err := rf.pace()
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var o rollout.Overrides
	if set["max-failure"] {
		o.MaxFailureRatio = &rf.maxFailure
	}
	if set["min-sample"] {
		o.MinSample = &rf.minSample
	}
	if paceSet {
		o.Pace = &pace
	}
	if set["timeout"] {
		o.Timeout = rf.timeout
	}
	if set["max-inflight"] {
		o.MaxInFlight = rf.maxInFlight
	}
	prog := newRolloutProgress(env)
	eng, c, status := rf.engine(ctx, env, fs, prog)
	if eng == nil {
		return status
	}
	defer c.Close()
	sum, err := eng.Resume(ctx, rf.name, o)
	return finishRollout(env, prog, rf.name, sum, err)
}

// finishRollout reports how a run ended: the summary as JSON on stdout, why on stderr.
func finishRollout(env Env, prog *rolloutProgress, name string, sum rollout.Summary, err error) int {
	prog.finish(sum)
	if sum.Name != "" {
		line, jerr := json.Marshal(sum)
		if jerr == nil {
			fmt.Fprintf(env.Stdout, "%s\n", line)
		}
	}
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, rollout.ErrHalted):
		return failf(env, ExitFailed, "rollout %s halted: %s; \"tmsctl rollout status -name %s -state failed\" lists the failures, \"tmsctl rollout resume\" continues", name, sum.HaltReason, name)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return failf(env, ExitTimeout, "%v", err)
	}
	return failf(env, ExitUsage, "%v", err)
}

func runRolloutStatus(env Env, args []string) int {
	fs := newFlagSet(env, "rollout status", "[--name N] [--json] [--state S] [--ids]", `
Shows rollout N from the --db file: its counts, then one line per terminal (state, stage,
progress, reason, detail, times). Without --name, lists every rollout of the file. Works while
a start or resume runs (it reads between their commits).

--state keeps the terminals in that state (pending, sent, accepted, running, succeeded, failed,
timed_out); --ids prints only their ids, one per line: a --targets-file for a new rollout.`)
	db := fs.String("db", "rollout.db", "rollout state `file`")
	name := fs.String("name", "", "rollout `name` (default: list all)")
	asJSON := fs.Bool("json", false, `print {"summary": …, "terminals": [...]} as JSON`)
	state := fs.String("state", "", "only terminals in this `state`")
	onlyIDs := fs.Bool("ids", false, "print only terminal ids")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *state != "" && !slices.Contains(rollout.States, rollout.State(*state)) {
		return usageErr(fs, "unknown --state %q", *state)
	}
	if _, err := os.Stat(*db); err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	st, err := rollout.OpenStore(*db)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *name == "" {
		return listRollouts(env, st, *asJSON)
	}
	sum, states, err := rollout.LoadStatus(st, *name)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *state != "" {
		states = slices.DeleteFunc(states, func(s rollout.TerminalState) bool { return s.State != rollout.State(*state) })
	}
	switch {
	case *onlyIDs:
		for _, s := range states {
			fmt.Fprintln(env.Stdout, s.ID)
		}
	case *asJSON:
		if states == nil {
			states = []rollout.TerminalState{}
		}
		out, err := json.MarshalIndent(struct {
			Summary   rollout.Summary         `json:"summary"`
			Terminals []rollout.TerminalState `json:"terminals"`
		}{sum, states}, "", "  ")
		if err != nil {
			return failf(env, ExitFailed, "%v", err)
		}
		fmt.Fprintf(env.Stdout, "%s\n", out)
	default:
		printStatus(env.Stdout, sum, states)
	}
	return ExitOK
}

func listRollouts(env Env, st *rollout.FileStore, asJSON bool) int {
	names, err := st.Names()
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	sums := make([]rollout.Summary, 0, len(names))
	for _, n := range names {
		sum, _, err := rollout.LoadStatus(st, n)
		if err != nil {
			return failf(env, ExitUsage, "%v", err)
		}
		sums = append(sums, sum)
	}
	if asJSON {
		out, err := json.MarshalIndent(sums, "", "  ")
		if err != nil {
			return failf(env, ExitFailed, "%v", err)
		}
		fmt.Fprintf(env.Stdout, "%s\n", out)
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tTOTAL\tSUCCEEDED\tFAILED\tTIMED_OUT\tIN_FLIGHT\tPENDING\tSTATE")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.Kind, s.Total, s.Succeeded, s.Failed, s.TimedOut, s.InFlight, s.Pending, rolloutCondition(s))
	}
	_ = tw.Flush()
	return ExitOK
}

// rolloutCondition is a rollout's condition in a word.
func rolloutCondition(s rollout.Summary) string {
	switch {
	case !s.Finished.IsZero():
		return "finished"
	case s.Halted:
		return "halted"
	case s.Started.IsZero():
		return "created"
	}
	return "started"
}

func printStatus(w io.Writer, sum rollout.Summary, states []rollout.TerminalState) {
	fmt.Fprintf(w, "rollout %s (%s): %s\n", sum.Name, sum.Kind, describeCounts(sum))
	fmt.Fprintf(w, "%s", rolloutCondition(sum))
	for _, t := range []struct {
		what string
		at   time.Time
	}{{"created", sum.Created}, {"started", sum.Started}, {"finished", sum.Finished}} {
		if !t.at.IsZero() {
			fmt.Fprintf(w, ", %s %s", t.what, t.at.Local().Format(time.DateTime))
		}
	}
	fmt.Fprintln(w)
	if sum.Halted {
		fmt.Fprintf(w, "halted: %s\n", sum.HaltReason)
	}
	if len(states) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSTAGE\tPROGRESS\tREASON\tSENT\tDONE\tDETAIL")
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.TimeOnly)
	}
	for _, s := range states {
		progress := "-"
		if s.State == rollout.StateRunning || s.Progress > 0 {
			progress = fmt.Sprintf("%d%%", s.Progress)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State, orDash(s.Stage), progress, orDash(s.Reason),
			stamp(s.SentAt), stamp(s.DoneAt), oneLine(s.Detail))
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a detail (an agent's message, possibly long) on one table line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:120], "") + "…"
	}
	return s
}

func runRolloutStop(env Env, args []string) int {
	fs := newFlagSet(env, "rollout stop", "--name N [--reason TEXT]", `
Halts rollout N in the --db file: a start or resume running it (in any process) sends nothing
new from within a second on, follows the terminals in flight to their end and exits with
status 1. "tmsctl rollout resume" continues it.`)
	db := fs.String("db", "rollout.db", "rollout state `file`")
	name := fs.String("name", "", "rollout `name` (required)")
	reason := fs.String("reason", "stopped by operator", "why, kept with the rollout")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *name == "" {
		return usageErr(fs, "--name is required")
	}
	if _, err := os.Stat(*db); err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	st, err := rollout.OpenStore(*db)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if err := st.RequestHalt(*name, *reason); err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	fmt.Fprintf(env.Stderr, "rollout %s: halt requested (%s)\n", *name, *reason)
	return ExitOK
}

// splitIDs splits a list of ids on commas and white space.
func splitIDs(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// parseTargets reads a targets file: ids separated by lines, commas or blanks; # starts a
// comment running to the end of its line.
func parseTargets(data string) []string {
	var ids []string
	for line := range strings.Lines(data) {
		line, _, _ = strings.Cut(line, "#")
		ids = append(ids, splitIDs(line)...)
	}
	return ids
}

// readCBORBody reads a body file that is already a CBOR map.
func readCBORBody(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if len(data) > tmsproto.MaxCommandSize {
		return nil, fmt.Errorf("body %s: %d bytes exceeds %d", path, len(data), tmsproto.MaxCommandSize)
	}
	var m map[string]any
	if len(data) == 0 || data[0]>>5 != 5 {
		return nil, fmt.Errorf("body %s: not a CBOR map", path)
	}
	if err := tmsproto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("body %s: %w", path, err)
	}
	return data, nil
}

// rolloutProgress shows a running rollout on stderr: on a terminal one line redrawn in place
// with a bar of the share finished, otherwise a plain line when the counts change, at most
// one a second (the engine reports after every step, which can be hundreds a second).
type rolloutProgress struct {
	w    io.Writer
	tty  bool
	now  func() time.Time
	last string
	at   time.Time
	// drawn says a redrawn line without newline is on screen.
	drawn bool
}

func newRolloutProgress(env Env) *rolloutProgress {
	return &rolloutProgress{w: env.Stderr, tty: env.StderrTTY, now: time.Now}
}

func (p *rolloutProgress) update(s rollout.Summary) {
	line := "rollout " + s.Name + ": " + describeSummary(s)
	if line == p.last {
		return
	}
	now := p.now()
	if now.Sub(p.at) < time.Second && !p.at.IsZero() && !s.Done() {
		return
	}
	p.last, p.at = line, now
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pct := 0
	if s.Total > 0 {
		pct = s.Final() * 100 / s.Total
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %s", bar(pct), line)
	p.drawn = true
}

// finish shows the last counts and ends a redrawn line.
func (p *rolloutProgress) finish(s rollout.Summary) {
	if s.Name != "" {
		p.at = time.Time{}
		p.update(s)
	}
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func describeCounts(s rollout.Summary) string {
	return fmt.Sprintf("%d/%d finished: %d succeeded, %d failed, %d timed out; %d in flight, %d pending",
		s.Final(), s.Total, s.Succeeded, s.Failed, s.TimedOut, s.InFlight, s.Pending)
}

func describeSummary(s rollout.Summary) string {
	if s.Halted {
		return describeCounts(s) + "; halted: " + s.HaltReason
	}
	return describeCounts(s)
}
