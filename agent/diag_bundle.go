package agent

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/buildinfo"
	"github.com/posagent/posagent/agent/config"
	"github.com/posagent/posagent/agent/logging"
)

// How much of the logs and of the audit log the bundle carries.
const (
	diagBundleLog = 2000 // lines of each log file in the bundle
	diagBundleAud = 1000 // audit entries in the bundle
)

// Bundle writes the diagnostics bundle: a gzip'd tar of the status, the resource history, the
// recent events, the tails of the agent's and the cash-register exchange logs, the recent
// audit entries and their verification, the terminal configuration, the outbox and the boot
// state. Keys, passwords, tokens and PIN blocks are in none of these sources; every JSON file
// also goes through the logging redaction (secret-named values dropped, card numbers
// masked) as a safety net.
func (t diagTerminal) Bundle(ctx context.Context, w io.Writer) error {
	a := t.a
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := time.Now()
	var names []string
	add := func(name string, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		names = append(names, name)
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	addJSON := func(name string, v any) error {
		b, err := scrubbedJSON(v)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", name, err)
		}
		return add(name, b)
	}
	addLines := func(name string, lines []string) error {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(logging.MaskPANs(l))
			b.WriteByte('\n')
		}
		return add(name, []byte(b.String()))
	}

	steps := []func() error{
		func() error { return addJSON("status.json", t.Status(ctx)) },
		func() error { return addJSON("history.json", t.History()) },
		func() error { return addJSON("events.json", t.Events(diagEventsKept)) },
		func() error { return addLines("logs/recent.txt", t.Logs(0)) },
		func() error {
			if a.logs == nil {
				return nil
			}
			return addLines("logs/agent.log", tailLines(a.logs.ReadRange, now, diagBundleLog))
		},
		func() error {
			if a.ecrLog == nil {
				return nil
			}
			return addLines("logs/ecr.log", tailLines(a.ecrLog.ReadRange, now, diagBundleLog))
		},
		func() error {
			entries, err := a.diag.audit.Recent(diagBundleAud)
			if err != nil {
				return addJSON("audit.json", map[string]string{"error": err.Error()})
			}
			return addJSON("audit.json", entries)
		},
		func() error {
			rep, err := a.diag.audit.Verify(ctx)
			v := map[string]any{"ok": err == nil, "report": rep}
			if err != nil {
				v["error"] = err.Error()
			}
			return addJSON("audit-verify.json", v)
		},
		func() error { return addJSON("termconfig.json", a.term.Active()) },
		func() error { return addJSON("outbox.json", a.outboxSummary()) },
		func() error { return addJSON("services.json", a.sup.Status()) },
		func() error { return addJSON("agent.json", a.configSummary()) },
		func() error {
			if a.ota.slots == nil {
				return nil
			}
			bs, err := a.ota.slots.State()
			if err != nil {
				return addJSON("boot.json", map[string]string{"error": err.Error()})
			}
			return addJSON("boot.json", bs)
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	if err := addJSON("bundle.json", map[string]any{"created": now, "deviceId": a.cfg.DeviceID,
		"serial": a.board.Identity().Serial, "version": buildinfo.Version, "files": names}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// scrubbedJSON encodes v with the logging redaction applied to every value.
func scrubbedJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	return json.MarshalIndent(maskJSON("", generic), "", "  ")
}

// tailLines reads the last n lines of a log kept for a week at most.
func tailLines(read func(from, to time.Time, fn func([]byte) error) error, now time.Time, n int) []string {
	ring := make([]string, 0, n)
	start := 0
	err := read(now.Add(-7*24*time.Hour), now.Add(time.Minute), func(line []byte) error {
		if len(ring) < n {
			ring = append(ring, string(line))
			return nil
		}
		ring[start] = string(line)
		start = (start + 1) % n
		return nil
	})
	out := append(append([]string{}, ring[start:]...), ring[:start]...)
	if err != nil {
		out = append(out, "(reading the log failed: "+err.Error()+")")
	}
	return out
}

// outboxSummary is the uplink queue's counters and how many records wait per stream.
func (a *Agent) outboxSummary() map[string]any {
	streams := map[string]int{}
	var after uint64
	for {
		recs, err := a.Outbox.Read(after, 512)
		if err != nil || len(recs) == 0 {
			break
		}
		for _, r := range recs {
			streams[r.Stream]++
			after = r.Key
		}
	}
	st := a.Outbox.State()
	return map[string]any{"records": st.Records, "bytes": st.Bytes, "thinned": st.Thinned, "alarm": st.Alarm, "streams": streams}
}

// configSummary is the local configuration a technician needs to read, without the
// credentials: no password, no key material, the broker without user information.
func (a *Agent) configSummary() map[string]any {
	c := a.cfg
	return map[string]any{
		"deviceId": c.DeviceID, "board": c.Board, "dataDir": c.DataDir,
		"tms": map[string]any{"broker": displayBroker(a.diag.fileBroker), "brokerInUse": displayBroker(a.diag.broker),
			"username": c.Username(), "tls": c.BrokerTLS(), "commandKeyIds": commandKeyIDs(c),
			"keepalive": c.TMS.KeepAlive.String(), "statsInterval": c.TMS.StatsInterval.String()},
		"ecrListen": c.ECR.Listen, "diagListen": c.Diag.Listen, "diagTLS": c.DiagTLS(),
		"logLevel": c.Log.Level, "logFile": c.LogFile() != "",
		"keystoreBackend": c.Keystore.Backend,
	}
}

func commandKeyIDs(c *config.Config) []string {
	ids := make([]string, 0, len(c.TMS.CommandKeys))
	for _, k := range c.TMS.CommandKeys {
		ids = append(ids, k.ID)
	}
	return ids
}
