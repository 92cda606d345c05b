// Command tmsctl is the TMS side of posagent: it creates command signing keys, signs and sends
// commands to terminals and follows them to their final ack, and watches the uplink.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/posagent/posagent/cmd/tmsctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, cli.OSEnv(), os.Args[1:], cli.Commands())
	stop()
	os.Exit(code)
}
