package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/tmsclient"
)

func runSend(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "send", "[flags] KIND", `
Signs a command of kind KIND (config.apply, ota.install, reboot, selftest, …) for one
terminal, publishes it, and follows its acks until a final state: progress on stderr (a bar on
a terminal), the final ack as one JSON line on stdout.

The command id is random unless --id is given. The seq is max(last+1, now in ms), the last one
kept per device in the seq file, so it keeps increasing across runs.

Exit status: 0 succeeded, 1 failed or rejected, 2 usage or connection error, 3 no final ack
within --wait.`)
	var cf connFlags
	cf.register(fs)
	device := fs.String("device", "", "target terminal `id` (required)")
	keyFile := fs.String("sign-key", "", "private key `file` written by keygen (required)")
	kid := fs.String("kid", "", "key `id` to sign under (default: the key file name without .key)")
	bodyArg := fs.String("body", "", "command body: JSON object `file`, or - for stdin (default: {})")
	expires := fs.Duration("expires", 10*time.Minute, "the command expires this long after now; 0: never")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the final ack")
	id := fs.String("id", "", "command `id` (default: 16 random bytes in hex)")
	seqFile := fs.String("seq-file", "", "`file` keeping the last seq per device (default: the key file with .seq.json for .key)")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) != 1:
		return usageErr(fs, "need exactly one KIND, got %d arguments", len(pos))
	case *device == "":
		return usageErr(fs, "--device is required")
	case *keyFile == "":
		return usageErr(fs, "--sign-key is required")
	case *expires < 0:
		return usageErr(fs, "--expires must not be negative")
	case *wait <= 0:
		return usageErr(fs, "--wait must be positive")
	}
	if err := tmsproto.ValidDeviceID(*device); err != nil {
		return usageErr(fs, "%v", err)
	}
	kind := pos[0]

	key, err := tmsclient.LoadSignKey(*keyFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *kid != "" {
		key.ID = *kid
	}
	body, err := readBody(env, *bodyArg)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	if *seqFile == "" {
		*seqFile = strings.TrimSuffix(*keyFile, tmsclient.PrivateKeySuffix) + ".seq.json"
	}
	seqs, err := tmsclient.NewSeqFile(*seqFile)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}

	c, err := cf.connect(ctx, fs, env)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	// Subscribed before sending, so an ack right after the send is not missed.
	acks, err := c.WatchAcks(wctx, *device)
	if err != nil {
		return failf(env, waitStatus(err), "%v", err)
	}
	defer acks.Stop()
	cmd := tmsproto.Command{ID: *id, Kind: kind, Body: body}
	if *expires > 0 {
		cmd.Expires = time.Now().Add(*expires).Unix()
	}
	sent, err := c.Send(wctx, *device, key, cmd, tmsclient.WithSeq(seqs))
	if err != nil {
		return failf(env, waitStatus(err), "%v", err)
	}
	fmt.Fprintf(env.Stderr, "sent %s to %s: id %s, seq %d, key %s\n", kind, *device, sent.Command.ID, sent.Command.Seq, key.ID)

	prog := &progress{w: env.Stderr, tty: env.StderrTTY}
	ack, err := acks.Await(wctx, sent.Match(), prog.ack)
	prog.finish()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return failf(env, ExitTimeout, "no final ack from %s within %v (command id %s)", *device, *wait, sent.Command.ID)
		}
		return failf(env, ExitUsage, "%v", err)
	}
	line, err := tmsclient.AckJSON(ack)
	if err != nil {
		return failf(env, ExitFailed, "%v", err)
	}
	fmt.Fprintf(env.Stdout, "%s\n", line)
	if ack.State != tmsproto.StateSucceeded {
		return ExitFailed
	}
	return ExitOK
}

// waitStatus maps an error met while sending: out of time is a timeout, the rest is a
// connection or input problem.
func waitStatus(err error) int {
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTimeout
	}
	return ExitUsage
}

// readBody reads the --body argument: nothing for an empty body, "-" for stdin, else a file.
func readBody(env Env, arg string) ([]byte, error) {
	if arg == "" {
		return nil, nil
	}
	var r io.Reader
	name := arg
	if arg == "-" {
		r, name = env.Stdin, "stdin"
	} else {
		f, err := os.Open(arg)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, tmsclient.MaxJSONBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("body from %s: %w", name, err)
	}
	body, err := tmsclient.JSONToCBORBody(data)
	if err != nil {
		return nil, fmt.Errorf("body from %s: %w", name, err)
	}
	return body, nil
}
