package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/posagent/posagent/agent/tmsproto"
)

const barWidth = 30

// progress shows a command's acks on stderr: on a terminal one line redrawn in place with a
// bar for running/progress, otherwise one plain line per change (for logs and pipes).
type progress struct {
	w     io.Writer
	tty   bool
	drawn bool   // a line without newline is on screen
	last  string // last plain line, to skip repeats
}

func (p *progress) ack(a tmsproto.Ack) {
	line := describeAck(a)
	if !p.tty {
		if line != p.last {
			p.last = line
			fmt.Fprintln(p.w, line)
		}
		return
	}
	if a.State == tmsproto.StateRunning {
		line = bar(a.Progress) + " " + line
	}
	// \r and "erase to end of line" redraw the line in place.
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.drawn = true
	if a.State.Final() {
		p.finish()
	}
}

// finish ends a redrawn line so that what follows starts on a line of its own.
func (p *progress) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

func describeAck(a tmsproto.Ack) string {
	var b strings.Builder
	b.WriteString(string(a.State))
	if a.State == tmsproto.StateRunning {
		fmt.Fprintf(&b, " %3d%%", clampPercent(a.Progress))
	}
	// A long command's stage: where it is while it runs, where it stopped when it failed.
	if a.Stage != "" && (a.State == tmsproto.StateRunning || a.State == tmsproto.StateFailed) {
		b.WriteString(" " + a.Stage)
	}
	if a.Reason != "" {
		b.WriteString(": " + string(a.Reason))
	}
	if a.Message != "" {
		b.WriteString(" (" + a.Message + ")")
	}
	if a.Duplicate {
		b.WriteString(" [recorded result of an earlier delivery]")
	}
	return b.String()
}

func bar(percent int) string {
	n := clampPercent(percent) * barWidth / 100
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", barWidth-n) + "]"
}

func clampPercent(p int) int { return min(max(p, 0), 100) }
