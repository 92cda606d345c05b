package transfer

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/crashtest"
)

var powerCut = crashtest.Helper{Test: "TestHelperTransferUntilKilled", Env: "TRANSFER_POWERCUT_DIR"}

const cutBlock = 8 << 10

// The helper's job, written by the killing test into the directory: URL, size, digest.
const jobFile = "job"

func cutTransfer(dir, url string, size int64, sum []byte) *Transfer {
	return &Transfer{
		Path:   filepath.Join(dir, "file.bin"),
		Size:   size,
		SHA256: sum,
		Source: HTTPSource{URL: url},
		State:  FileState{Path: filepath.Join(dir, "file.cp")},
		Block:  cutBlock,
		Retry:  quickRetry,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// TestHelperTransferUntilKilled runs in a child process: it runs the transfer of the job and,
// once it is complete, waits to be killed.
func TestHelperTransferUntilKilled(t *testing.T) {
	dir := powerCut.Dir()
	if dir == "" {
		t.Skip("helper process only")
	}
	job, err := os.ReadFile(filepath.Join(dir, jobFile))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(job))
	size, _ := strconv.ParseInt(f[1], 10, 64)
	sum, _ := hex.DecodeString(f[2])
	tr := cutTransfer(dir, f[0], size, sum)
	crashtest.Ready(t)
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {}
}

// throttled slows the server down so that kills land in the middle of the transfer.
type throttled struct{ io.ReadSeeker }

func (t throttled) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return t.ReadSeeker.Read(p[:min(len(p), 2<<10)])
}

// TestPowerCutDuringTransfer kills a process running a transfer at random moments and starts
// it again each time. Each interruption may cost at most one block of re-fetching, and the
// file in the end is exact.
func TestPowerCutDuringTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	trials := 20
	if os.Getenv("POSAGENT_LONG") != "" {
		trials = 300
	}
	// About 30 KiB arrive per trial, so most kills land mid-file.
	data := testData(trials*24<<10, 10)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "file.bin", time.Unix(1700000000, 0), throttled{bytes.NewReader(data)})
	}))
	defer ts.Close()
	dir := t.TempDir()
	job := ts.URL + " " + strconv.Itoa(len(data)) + " " + hex.EncodeToString(digest(data))
	if err := os.WriteFile(filepath.Join(dir, jobFile), []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	state := FileState{Path: filepath.Join(dir, "file.cp")}
	rng := crashtest.Rand(t)
	var last Checkpoint
	midway := 0
	for i := 0; i < trials; i++ {
		powerCut.KillAfterReady(t, dir, time.Duration(rng.IntN(60))*time.Millisecond)
		cp, _, err := state.Load()
		if err != nil {
			t.Fatalf("trial %d: checkpoint: %v", i, err)
		}
		if cp.Refetched-last.Refetched > cutBlock || cp.Resumes-last.Resumes > 1 {
			t.Fatalf("trial %d: checkpoint went from %+v to %+v", i, last, cp)
		}
		if cp.Offset < last.Offset {
			t.Fatalf("trial %d: checkpoint went back from %d to %d", i, last.Offset, cp.Offset)
		}
		if cp.Offset > 0 && cp.Offset < int64(len(data)) {
			midway++
		}
		last = cp
	}
	tr := cutTransfer(dir, ts.URL, int64(len(data)), digest(data))
	cp, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, tr.Path, data)
	if cp.Refetched > int64(cp.Resumes)*cutBlock {
		t.Fatalf("%+v: more than one block re-fetched per resume", cp)
	}
	t.Logf("%d trials, %d killed mid-file; %d resumes, %d bytes re-fetched for %d", trials, midway, cp.Resumes, cp.Refetched, len(data))
}
