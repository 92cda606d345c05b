package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/posagent/posagent/agent"
	"github.com/posagent/posagent/agent/hardware"
	"github.com/posagent/posagent/internal/syncio"
)

// selfTest tests the terminal's devices from the command line, for a technician with the agent
// stopped: the running agent holds the serial ports (and answers the TMS `selftest` command).
func selfTest(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := loadConfig("selftest", args, stderr)
	if !ok {
		return code
	}
	// The log (devices going away, from their own goroutines) and the progress line share
	// stderr: one lock keeps their lines whole whatever writer stderr is.
	stderr = syncio.NewWriter(stderr)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := agent.OpenBoard(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "posagent:", err)
		return 1
	}
	defer b.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	runCtx, cancel := context.WithCancel(ctx)
	backoff := cfg.Backoff()
	hw := hardware.New(hardware.Options{Board: b, Logger: log,
		Backoff: func(n int) time.Duration { return backoff.Delay(n, nil) }})
	done := make(chan error, 1)
	go func() { done <- hw.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-hw.Ready():
	case err := <-done:
		fmt.Fprintln(stderr, "posagent:", err)
		return 1
	}

	results := hw.SelfTest(ctx, func(done, total int) {
		fmt.Fprintf(stderr, "\rself-test %d/%d", done, total)
	})
	fmt.Fprintln(stderr)
	for _, r := range results {
		fmt.Fprintln(stdout, r)
	}
	if hardware.Failed(results) {
		fmt.Fprintln(stdout, "self-test FAILED")
		return 1
	}
	fmt.Fprintln(stdout, "self-test passed")
	return 0
}
