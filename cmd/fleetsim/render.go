package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/posagent/posagent/internal/fleet/plot"
)

// errRender is a render input that cannot be used.
var errRender = errors.New("render")

// The render subcommand turns the reports of a standard run (make fleet) into docs/fleet.md
// and the storm plot: the figures come only from the reports, so the page can be made again
// from them at any time.
//
//	fleetsim render -o docs/fleet.md -plot docs/fleet-storm.png report.json...
func runRender(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleetsim render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "-", "the markdown page to write (- = stdout)")
	png := fs.String("plot", "", "the storm plot to write (PNG); its name is linked from the page")
	title := fs.String("title", "Fleet scale", "the page title")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: fleetsim render [-o PAGE.md] [-plot STORM.png] REPORT.json...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	reps := make([]namedReport, 0, fs.NArg())
	for _, path := range fs.Args() {
		r, err := readReport(path)
		if err != nil {
			fmt.Fprintf(stderr, "fleetsim render: %v\n", err)
			return exitFailed
		}
		reps = append(reps, namedReport{name: strings.TrimSuffix(filepath.Base(path), ".json"), Report: r})
	}
	var plotName string
	if *png != "" {
		if err := writeStormPlot(*png, reps); err != nil {
			fmt.Fprintf(stderr, "fleetsim render: %v\n", err)
			return exitFailed
		}
		plotName = filepath.Base(*png)
	}
	var b strings.Builder
	renderPage(&b, *title, reps, plotName)
	if *out == "-" {
		_, err := io.WriteString(stdout, b.String())
		if err != nil {
			return exitFailed
		}
		return exitOK
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintf(stderr, "fleetsim render: %v\n", err)
		return exitFailed
	}
	return exitOK
}

type namedReport struct {
	name string
	*Report
}

func readReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRender, err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errRender, path, err)
	}
	if r.Schema != reportSchema {
		return nil, fmt.Errorf("%w: %s: report schema %d, this fleetsim reads %d", errRender, path, r.Schema, reportSchema)
	}
	return &r, nil
}

// writeStormPlot draws connected terminals over time, one line per storm of every report,
// aligned on the broker being back up.
func writeStormPlot(path string, reps []namedReport) error {
	c := plot.Chart{Title: "Reconnect storm after a broker restart", XLabel: "seconds since the broker was back up",
		YLabel: "terminals connected"}
	rate := plot.Chart{}
	for _, r := range reps {
		for _, s := range r.Storms {
			name := fmt.Sprintf("%d terminals, %s", s.Terminals, jitterName(s.Jitter))
			conn := plot.Series{Name: name}
			cps := plot.Series{Name: name}
			for _, b := range s.Timeline {
				x := float64(b.TMs) / 1000
				conn.Points = append(conn.Points, plot.Point{X: x, Y: float64(b.Connected)})
				cps.Points = append(cps.Points, plot.Point{X: x, Y: float64(b.Connects) * 1000 / float64(max(s.BucketMs, 1))})
			}
			c.Series = append(c.Series, conn)
			rate.Series = append(rate.Series, cps)
		}
	}
	if len(c.Series) == 0 {
		return fmt.Errorf("%w: no storm in the reports to plot", errRender)
	}
	if err := writeChart(path, c); err != nil {
		return err
	}
	rate.Title, rate.XLabel, rate.YLabel = "Connection rate during the storm (100 ms buckets)", c.XLabel, "connects per second"
	return writeChart(strings.TrimSuffix(path, ".png")+"-rate.png", rate)
}

func writeChart(path string, c plot.Chart) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := c.PNG(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func jitterName(j bool) string {
	if j {
		return "full jitter"
	}
	return "no jitter (lock-step)"
}

// renderPage writes the page: one section per kind of figure, each row naming its report.
func renderPage(w *strings.Builder, title string, reps []namedReport, plotName string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# %s\n\n", title)
	p("Made by `make fleet` (`scripts/fleet.sh`, then `fleetsim render`) from the reports of real runs of\n")
	p("`cmd/fleetsim` against Mosquitto on loopback: every terminal is the agent's own TMS link, outbox,\n")
	p("command journal, configuration store and updater, with its own bbolt file; only the devices are\n")
	p("simulated in process. Do not edit by hand: run `make fleet` again.\n\n")
	if len(reps) > 0 {
		h := reps[0].Host
		p("Machine: %d CPUs, %s/%s, %s. Runs: %s.\n\n", h.CPUs, h.OS, h.Arch, h.GoVersion, runDates(reps))
	}

	steady := slices.DeleteFunc(slices.Clone(reps), func(r namedReport) bool { return r.Steady == nil })
	slices.SortFunc(steady, func(a, b namedReport) int { return a.Steady.Terminals - b.Steady.Terminals })
	if len(steady) > 0 {
		p("## Steady state\n\n")
		p("Every terminal connected, stats at the default interval (%s), keepalive %s. A size is *sustained*\n",
			dur(steady[0].Config.StatsIntervalSec), dur(steady[0].Config.KeepAliveSec))
		p("when every terminal stayed connected through the window, no connection failed, every outbox\n")
		p("ended empty and the simulator and broker together used less than the machine's cores.\n\n")
		p("| report | terminals | processes | start → all connected | window | connected at end | failures | outbox at end | msgs up/s | simulator CPU (cores) | simulator RSS | RSS per terminal | broker CPU (cores) | broker RSS | sustained |\n")
		p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		largest := 0
		for _, r := range steady {
			s := r.Steady
			var rss int64
			for _, pu := range s.Processes {
				rss += pu.RSSBytes
			}
			brokerRSS, brokerCores := "—", "—"
			if s.Broker != nil {
				brokerRSS = mib(s.Broker.RSSBytes)
				brokerCores = fmt.Sprintf("%.2f", s.BrokerCPUSec/max(s.WindowSec, 1))
			}
			outbox := finalOutbox(r)
			ok := s.Connected == s.Terminals && s.ConnectFailures == 0 && outbox == 0 &&
				s.CPUCores+s.BrokerCPUSec/max(s.WindowSec, 1) < float64(r.Host.CPUs) && len(r.Failures) == 0
			if ok {
				largest = max(largest, s.Terminals)
			}
			p("| %s | %d | %d | %s | %s | %d | %d | %d | %.1f | %.2f | %s | %s | %s | %s | %s |\n",
				r.name, s.Terminals, r.Config.Procs, allConnected(r), dur(s.WindowSec), s.Connected, s.ConnectFailures,
				outbox, s.MsgsUpPerSec, s.CPUCores, mib(rss), kib(float64(rss)/float64(max(s.Terminals, 1))),
				brokerCores, brokerRSS, yesNo(ok))
		}
		p("\n**Largest fleet sustained: %d terminals** (goal ≥ 10 000).\n\n", largest)
	}

	var storms []stormReport
	for _, r := range reps {
		storms = append(storms, r.Storms...)
	}
	if len(storms) > 0 {
		p("## Reconnect storm after a broker restart\n\n")
		p("The broker is stopped (its sessions saved), kept down, and started again on the same port; every\n")
		p("terminal had been connected for more than a minute, so its backoff starts at the first step\n")
		p("(base %s, cap %s). *Full jitter* is the agent's policy; *no jitter* waits exactly the ceiling, the\n",
			dur(reps[0].Config.BackoffBaseSec), dur(reps[0].Config.BackoffCapSec))
		p("textbook exponential backoff, for comparison. Times are from the broker being back up.\n\n")
		p("| terminals | backoff | broker down | peak connects/s (100 ms) | peak connects/s (1 s) | 50 %% back | 95 %% back | all back | connects | failed attempts |\n")
		p("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range storms {
			p("| %d | %s | %s | %.0f | %.0f | %s | %s | %s | %d | %d |\n", s.Terminals, jitterName(s.Jitter),
				dur(s.DownSec), s.PeakConnectsPerSec, s.PeakConnectsPer1Sec, optSec(s.To50Sec), optSec(s.To95Sec),
				optSec(s.To100Sec), s.Connects, s.ConnectFailures)
		}
		if plotName != "" {
			p("\n![terminals connected over time during the storm](%s)\n\n", plotName)
			p("![connection rate during the storm](%s)\n", strings.TrimSuffix(plotName, ".png")+"-rate.png")
		}
		p("\n")
	}

	for _, r := range reps {
		if pt := r.Partition; pt != nil {
			p("## Partition and recovery (%s)\n\n", r.name)
			p("%d of %d terminals (%.0f %%) lost their network (%s: %s) for %s and queued %d events each while cut.\n",
				pt.Cut, r.Config.N, pt.Share*100, pt.Mode, modeText(pt.Mode), dur(pt.ForSec), pt.EventsPerTerminal)
			p("After the heal the TMS-side observer checked every terminal's event, stats and ack streams seq by seq.\n\n")
			p("| cut | events queued | reconnected after heal | outboxes drained after heal | streams checked | complete | **missing** | records received (duplicates included) |\n")
			p("|---|---|---|---|---|---|---|---|\n")
			p("| %d | %d | %s | %s | %d | %d | **%d** | %d |\n\n", pt.Cut, pt.EventsQueued, dur(pt.ReconnectedSec),
				dur(pt.DrainedSec), pt.Streams, pt.Complete, pt.Missing, pt.Received)
		}
	}

	for _, r := range reps {
		if c := r.ConfigPush; c != nil {
			p("## Fleet-wide configuration push (%s)\n\n", r.name)
			p("A signed `config.apply` (version %d) to every terminal through `internal/rollout` (the engine behind\n", c.Version)
			p("`tmsctl rollout`), %s; done when every terminal's final ack is in.\n\n", rateText(c.RatePerMin))
			p("| targets | all final acks after | succeeded | failed | timed out | at the new version |\n|---|---|---|---|---|---|\n")
			p("| %d | %s | %d | %d | %d | %d |\n\n", c.Targets, dur(c.AllFinalSec), c.Succeeded, c.Failed, c.TimedOut, c.AtVersion)
		}
		if o := r.OTA; o != nil {
			p("## OTA rollout (%s)\n\n", r.name)
			p("A signed release with one %d-byte file component, pulled by every terminal over MQTT blocks from\n", o.FileBytes)
			p("the TMS side, %s.\n\n", rateText(o.RatePerMin))
			p("| targets | all final after | succeeded | failed | timed out | installed | bytes served |\n|---|---|---|---|---|---|---|\n")
			p("| %d | %s | %d | %d | %d | %d | %s |\n\n", o.Targets, dur(o.AllFinalSec), o.Succeeded, o.Failed, o.TimedOut,
				o.Installed, mib(o.BlobBytesServed))
		}
	}

	for _, r := range reps {
		if id := r.Idle; id != nil {
			p("## Idle mobile data (%s)\n\n", r.name)
			p("%d idle terminals at the production intervals (keepalive %s, stats every %s, first stats at a random\n",
				id.Terminals, dur(id.KeepAliveSec), dur(id.StatsIntervalSec))
			p("point of the interval), measured on their own sockets over a %s window: TCP payload both ways plus\n", dur(id.WindowSec))
			p("52 bytes of IPv4 and TCP headers for every segment the kernel counted (TCP_INFO), pure ACKs\n")
			p("included. Plain TCP; TLS adds about 25 %% (`BenchmarkIdleMobileData` in docs/benchmarks.md).\n\n")
			p("The month is built from two parts measured in the window: one keepalive exchange (%.0f B on the\n", id.IPBytesPerKeepAlive)
			p("air, from the terminals that sent nothing else) and one statistics record (%.0f B, PUBLISH, PUBACK\n", id.IPBytesPerStats)
			p("and their segments), times their number in 30 days at the intervals above. Stretching the\n")
			p("window instead gives %.2f MB: a fleet started together pings in phase, so a window holds one\n", id.WindowIPBytesPerMonth/1e6)
			p("keepalive more or less for every terminal at once.\n\n")
			pt := id.PerTerminal
			p("| per terminal in the window | payload up | payload down | segments up | segments down | IP bytes | stats records (fleet) |\n|---|---|---|---|---|---|---|\n")
			p("| mean | %.0f B | %.0f B | %.1f | %.1f | %.0f B | %d |\n\n", pt.BytesUp, pt.BytesDown, pt.SegsUp, pt.SegsDown, pt.IPBytes, id.StatsRecords)
			p("IP bytes per terminal in the window: min %.0f, median %.0f, p95 %.0f, max %.0f.\n\n",
				id.IPBytesDist.Min, id.IPBytesDist.P50, id.IPBytesDist.P95, id.IPBytesDist.Max)
			p("**Idle mobile data per terminal per month: %.2f MB** (goal ≤ 3 MB).\n\n", id.IPBytesPerMonth/1e6)
		}
	}

	var failures []string
	for _, r := range reps {
		for _, f := range r.Failures {
			failures = append(failures, r.name+": "+f)
		}
		if r.Error != "" {
			failures = append(failures, r.name+": stopped: "+r.Error)
		}
	}
	p("## Invariants\n\n")
	if len(failures) == 0 {
		p("Every run met every invariant its scenarios check.\n")
	} else {
		for _, f := range failures {
			p("- %s\n", f)
		}
	}
}

func finalOutbox(r namedReport) int {
	n := 0
	for _, f := range r.Fleets {
		n += f.Final.OutboxRecords
	}
	return n
}

func allConnected(r namedReport) string {
	for _, f := range r.Fleets {
		if f.AllConnectedSec > 0 {
			return dur(f.AllConnectedSec)
		}
	}
	return "never"
}

func runDates(reps []namedReport) string {
	first, last := reps[0].Started, reps[0].Finished
	for _, r := range reps {
		if r.Started.Before(first) {
			first = r.Started
		}
		if r.Finished.After(last) {
			last = r.Finished
		}
	}
	return first.UTC().Format("2006-01-02 15:04") + " – " + last.UTC().Format("15:04 MST")
}

func modeText(mode string) string {
	switch mode {
	case "blackhole":
		return "packets silently lost, noticed by keepalive"
	case "reset":
		return "connections reset and dials refused, as when the modem reports the loss"
	}
	return mode
}

func rateText(perMin float64) string {
	if perMin <= 0 {
		return "sent to all at once (bounded by the engine's in-flight limit)"
	}
	return fmt.Sprintf("at %.0f terminals per minute", perMin)
}

func dur(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func optSec(v *float64) string {
	if v == nil {
		return "—"
	}
	return dur(*v)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func kib(b float64) string { return fmt.Sprintf("%.0f KiB", b/1024) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
