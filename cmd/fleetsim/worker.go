package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// maxLine bounds one protocol line: the terminal rows of 9000 terminals are a few MiB.
const maxLine = 256 << 20

// workerStopTimeout bounds how long a worker may take to exit after its stdin closed.
const workerStopTimeout = 2 * time.Minute

// ErrWorkerGone is returned for requests to a worker process that has exited.
var ErrWorkerGone = errors.New("worker process gone")

// decodeRequest parses one line of a worker's stdin.
func decodeRequest(line []byte) (request, error) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return request{}, fmt.Errorf("bad request: %w", err)
	}
	if dec.More() {
		return request{}, errors.New("bad request: trailing data")
	}
	if req.ID == 0 || req.Op == "" {
		return request{}, errors.New("bad request: id and op are required")
	}
	return req, nil
}

// runWorker is a worker process: it runs the part of the fleet the parent starts over stdin,
// answers every request with one line on stdout, and closes its fleet and exits when stdin
// ends (the parent is done, or gone).
func runWorker(ctx context.Context, role string, verbose bool, stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("worker", role)
	st := &shardState{role: "worker " + role, termLog: terminalLogger(stderr, verbose).With("worker", role)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var outMu sync.Mutex
	enc := json.NewEncoder(stdout)
	write := func(resp response) {
		outMu.Lock()
		defer outMu.Unlock()
		if err := enc.Encode(resp); err != nil {
			log.Error("response not written", "err", err)
		}
	}
	var wg sync.WaitGroup
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		req, err := decodeRequest(sc.Bytes())
		if err != nil {
			write(response{Err: err.Error()})
			continue
		}
		// Requests run concurrently: a partition must not wait behind a slow close.
		wg.Go(func() { write(st.handle(runCtx, runCtx, req)) })
	}
	if err := sc.Err(); err != nil {
		log.Error("reading requests", "err", err)
	}
	cancel()
	wg.Wait()
	if _, err := st.closeFleet(); err != nil {
		log.Error("closing the fleet", "err", err)
		return 1
	}
	return 0
}

// procShard is a worker process running part of the fleet.
type procShard struct {
	role  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	writeMu sync.Mutex
	enc     *json.Encoder

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan response
	gone    chan struct{} // closed when the worker's stdout ended
	goneErr error
}

// startWorker re-executes this program as worker i of k.
func startWorker(i, k int, verbose bool, stderr io.Writer) (*procShard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	role := fmt.Sprintf("%d/%d", i+1, k)
	args := []string{"-worker", role}
	if verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = stderr
	setDeathSignal(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", role, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", role, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("worker %s: %w", role, err)
	}
	p := &procShard{role: "worker " + role, cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin),
		waiting: map[uint64]chan response{}, gone: make(chan struct{})}
	go p.read(stdout)
	return p, nil
}

// read dispatches the worker's response lines to the waiting calls.
func (p *procShard) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var err error
	for sc.Scan() {
		var resp response
		if e := json.Unmarshal(sc.Bytes(), &resp); e != nil {
			err = fmt.Errorf("%s: bad response line: %w", p.role, e)
			break
		}
		p.mu.Lock()
		ch := p.waiting[resp.ID]
		delete(p.waiting, resp.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	if err == nil {
		err = sc.Err()
	}
	p.mu.Lock()
	p.goneErr = err
	p.mu.Unlock()
	close(p.gone)
	// Drain: the worker must never block on a full pipe while it exits.
	_, _ = io.Copy(io.Discard, stdout)
}

func (p *procShard) call(ctx context.Context, req request) (response, error) {
	ch := make(chan response, 1)
	p.mu.Lock()
	p.next++
	req.ID = p.next
	p.waiting[req.ID] = ch
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.waiting, req.ID)
		p.mu.Unlock()
	}
	p.writeMu.Lock()
	err := p.enc.Encode(req)
	p.writeMu.Unlock()
	if err != nil {
		forget()
		return response{}, fmt.Errorf("%s: %s: %w: %w", p.role, req.Op, ErrWorkerGone, err)
	}
	select {
	case resp := <-ch:
		if resp.Err != "" {
			return resp, fmt.Errorf("%s: %s: %s", p.role, req.Op, resp.Err)
		}
		return resp, nil
	case <-p.gone:
		forget()
		p.mu.Lock()
		err := p.goneErr
		p.mu.Unlock()
		return response{}, fmt.Errorf("%s: %s: %w (%v)", p.role, req.Op, ErrWorkerGone, err)
	case <-ctx.Done():
		forget()
		return response{}, fmt.Errorf("%s: %s: %w", p.role, req.Op, ctx.Err())
	}
}

// close asks the worker to close its fleet, ends its stdin and waits for it to exit; the usage
// is the worker's last report with its CPU time from the kernel's accounting of the exited
// process (the close included).
func (p *procShard) close(ctx context.Context) (*procUsage, error) {
	var usage *procUsage
	resp, err := p.call(ctx, request{Op: opClose})
	if err == nil {
		usage = resp.Usage
	}
	p.stdin.Close()
	waited := make(chan error, 1)
	go func() { waited <- p.cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(workerStopTimeout):
		_ = p.cmd.Process.Kill()
		werr = <-waited
	}
	if ps := p.cmd.ProcessState; ps != nil && usage != nil {
		if ru, ok := exitedUsage(ps); ok {
			usage.CPUUserSec, usage.CPUSysSec = ru.CPUUserSec, ru.CPUSysSec
		}
	}
	return usage, errors.Join(err, werr)
}

func (p *procShard) label() string { return p.role }
