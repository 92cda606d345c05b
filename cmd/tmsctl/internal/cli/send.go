package cli

import (
	"context"
	"errors"
	"flag"
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
	var sf sendFlags
	sf.register(fs, true)
	bodyArg := fs.String("body", "", "command body: JSON object `file`, or - for stdin (default: {})")
	pos, status, ok := parseFlags(fs, args)
	if !ok {
		return status
	}
	if len(pos) != 1 {
		return usageErr(fs, "need exactly one KIND, got %d arguments", len(pos))
	}
	if status, ok := sf.validate(fs); !ok {
		return status
	}
	kind := pos[0]
	body, err := readBody(env, *bodyArg)
	if err != nil {
		return failf(env, ExitUsage, "%v", err)
	}
	ack, status := sf.send(ctx, env, fs, &cf, kind, body, kind)
	if status != ExitOK {
		return status
	}
	return printFinalAck(env, ack)
}

// sendFlags are the flags of a command signed, sent to one terminal and followed to its final
// ack: send, license send, keys load, keys status.
type sendFlags struct {
	device, keyFile, kid, id, seqFile string
	expires, wait                     time.Duration
	needKey                           bool // --sign-key is required
}

// register adds the flags; with needKey --sign-key is required.
func (sf *sendFlags) register(fs *flag.FlagSet, needKey bool) {
	sf.needKey = needKey
	keyHelp := "private key `file` written by keygen (required)"
	if !needKey {
		keyHelp = "private key `file` written by keygen (optional)"
	}
	fs.StringVar(&sf.device, "device", "", "target terminal `id` (required)")
	fs.StringVar(&sf.keyFile, "sign-key", "", keyHelp)
	fs.StringVar(&sf.kid, "kid", "", "key `id` to sign under (default: the key file name without .key)")
	fs.DurationVar(&sf.expires, "expires", 10*time.Minute, "the command expires this long after now; 0: never")
	fs.DurationVar(&sf.wait, "wait", 2*time.Minute, "how long to wait for the final ack")
	fs.StringVar(&sf.id, "id", "", "command `id` (default: 16 random bytes in hex)")
	fs.StringVar(&sf.seqFile, "seq-file", "", "`file` keeping the last seq per device (default: the key file with .seq.json for .key)")
}

// validate checks the flags after parsing.
func (sf *sendFlags) validate(fs *flag.FlagSet) (int, bool) {
	switch {
	case sf.device == "":
		return usageErr(fs, "--device is required"), false
	case sf.needKey && sf.keyFile == "":
		return usageErr(fs, "--sign-key is required"), false
	case sf.expires < 0:
		return usageErr(fs, "--expires must not be negative"), false
	case sf.wait <= 0:
		return usageErr(fs, "--wait must be positive"), false
	}
	if err := tmsproto.ValidDeviceID(sf.device); err != nil {
		return usageErr(fs, "%v", err), false
	}
	return 0, true
}

// signer loads the signing key and opens the seq file.
func (sf *sendFlags) signer() (tmsclient.SignKey, *tmsclient.SeqFile, error) {
	key, err := tmsclient.LoadSignKey(sf.keyFile)
	if err != nil {
		return tmsclient.SignKey{}, nil, err
	}
	if sf.kid != "" {
		key.ID = sf.kid
	}
	path := sf.seqFile
	if path == "" {
		path = strings.TrimSuffix(sf.keyFile, tmsclient.PrivateKeySuffix) + ".seq.json"
	}
	seqs, err := tmsclient.NewSeqFile(path)
	if err != nil {
		return tmsclient.SignKey{}, nil, err
	}
	return key, seqs, nil
}

// send loads the signing key, connects to the broker and follows the command of kind with
// body like follow, closing the connection before it returns.
func (sf *sendFlags) send(ctx context.Context, env Env, fs *flag.FlagSet, cf *connFlags, kind string, body []byte, what string) (tmsproto.Ack, int) {
	key, seqs, err := sf.signer()
	if err != nil {
		return tmsproto.Ack{}, failf(env, ExitUsage, "%v", err)
	}
	c, err := cf.connect(ctx, fs, env)
	if err != nil {
		return tmsproto.Ack{}, failf(env, ExitUsage, "%v", err)
	}
	defer c.Close()
	return sf.follow(ctx, env, c, key, seqs, kind, body, what)
}

// follow signs and sends a command of kind with body to the device, and follows its acks
// within --wait with progress on stderr ("sent WHAT to DEVICE: …" first). It returns the final
// ack with ExitOK, whatever its state; any other status has been reported on stderr.
func (sf *sendFlags) follow(ctx context.Context, env Env, c *tmsclient.Client, key tmsclient.SignKey, seqs tmsclient.SeqSource,
	kind string, body []byte, what string) (tmsproto.Ack, int) {
	wctx, cancel := context.WithTimeout(ctx, sf.wait)
	defer cancel()
	// Subscribed before sending, so an ack right after the send is not missed.
	acks, err := c.WatchAcks(wctx, sf.device)
	if err != nil {
		return tmsproto.Ack{}, failf(env, waitStatus(err), "%v", err)
	}
	defer acks.Stop()
	cmd := tmsproto.Command{ID: sf.id, Kind: kind, Body: body}
	if sf.expires > 0 {
		cmd.Expires = time.Now().Add(sf.expires).Unix()
	}
	sent, err := c.Send(wctx, sf.device, key, cmd, tmsclient.WithSeq(seqs))
	if err != nil {
		return tmsproto.Ack{}, failf(env, waitStatus(err), "%v", err)
	}
	fmt.Fprintf(env.Stderr, "sent %s to %s: id %s, seq %d, key %s\n", what, sf.device, sent.Command.ID, sent.Command.Seq, key.ID)

	prog := &progress{w: env.Stderr, tty: env.StderrTTY}
	ack, err := acks.Await(wctx, sent.Match(), prog.ack)
	prog.finish()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return tmsproto.Ack{}, failf(env, ExitTimeout, "no final ack from %s within %v (command id %s)", sf.device, sf.wait, sent.Command.ID)
		}
		return tmsproto.Ack{}, failf(env, ExitUsage, "%v", err)
	}
	return ack, ExitOK
}

// printFinalAck prints the final ack as one JSON line on stdout: ExitOK when it succeeded,
// else ExitFailed.
func printFinalAck(env Env, ack tmsproto.Ack) int {
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
