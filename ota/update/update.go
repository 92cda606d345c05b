// Package update runs the terminal's software and file updates (ota.install, apps.set,
// file.put, ota.cancel) as explicit, persisted state machines, the way Mender's client does:
//
//	downloading → verifying → waiting → installing → [rebooting → health-check] → done
//
// Each stage is committed before its work starts, so a power cut at any instruction resumes
// the job where it was: a transfer re-fetches at most one block (ota/transfer), an installed
// component is not installed twice, and an agent on trial in its new slot either commits after
// passing its health check or is rolled back by the launcher (ota/slots). The command's single
// final ack comes from the dispatcher's journal, whichever process — old or new version —
// finishes the job.
//
// The package knows nothing of the agent: sources, the quiet-terminal gate, the health check
// and the restart are given as small functions in Options.
package update

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/ota/install/component"
	"github.com/posagent/posagent/ota/install/files"
	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/slots"
	"github.com/posagent/posagent/ota/transfer"
)

// Reporter is how a job tells the TMS where it is (command.Request satisfies it).
type Reporter interface {
	Report(ctx context.Context, stage string, pct int) error
}

// Gate holds installs back until the terminal is quiet. Wait returns once no payment runs
// (and, as the policy asks, the maintenance window is open and the batch is settled), with a
// release that lets payments start again; until release, new payments are refused.
type Gate interface {
	Wait(ctx context.Context, p GatePolicy) (release func(), err error)
}

// GatePolicy is what one install waits for besides no payment in progress.
type GatePolicy struct {
	Window  bool // the maintenance window (if the configuration restricts updates to it)
	Settled bool // an empty batch
}

// PackageManager installs Android packages (apk.PM satisfies it).
type PackageManager interface {
	Installed(ctx context.Context) (map[string]int64, error)
	Install(ctx context.Context, apkFile string) error
	Uninstall(ctx context.Context, pkg string) error
}

// Options wire an Updater.
type Options struct {
	DB     *store.DB
	Commit *store.Committer
	// Dir keeps downloads (<data_dir>/ota). Files there are named by their SHA-256.
	Dir      string
	Verifier *manifest.Verifier
	Model    string // board model, for manifest targeting
	Arch     string // GOOS/GOARCH of this binary
	Now      func() time.Time
	// Source opens the byte source of a component (MQTT block pull or HTTPS Range).
	Source func(c manifest.Component, spec SourceSpec) (transfer.Source, error)
	// Slots are the agent's A/B slots; nil when the agent runs without the launcher, where an
	// agent update is refused (nothing could roll it back).
	Slots *slots.Slots
	// Slot is the slot this process runs from ("factory", "a", "b").
	Slot      string
	Installer component.Hook                              // the board's system component installer
	Apps      PackageManager                              // nil: not an Android terminal
	Files     files.Locations                             // named locations of file components and file.put
	Config    func(ctx context.Context, raw []byte) error // applies a configuration bundle
	Cert      func(ctx context.Context, name, usage string, pem []byte) error
	Gate      Gate
	// Health is the new agent's health check: connected to the TMS and self-test passed.
	Health func(ctx context.Context) error
	// Restart asks the agent to stop and be started again by the launcher. The job's context
	// ends with the stop; the job resumes in the next process.
	Restart func()
	// MaxSize bounds one component (0: 1 GiB).
	MaxSize int64
	Logger  *slog.Logger
	// Events, if set, is told of outcomes worth an up/event (ota.rolled_back, ota.committed).
	Events func(kind string, body map[string]any)
}

// Updater runs update jobs. One job runs at a time (the dispatcher runs these kinds in
// order); Cancel may come from another goroutine.
type Updater struct {
	opts   Options
	db     *store.DB
	commit *store.Committer
	log    *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc
	current *Job
	pct     int
}

// Open prepares the bucket and the download directory.
func Open(opts Options) (*Updater, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 1 << 30
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	if err := initBuckets(opts.DB); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	u := &Updater{opts: opts, db: opts.DB, commit: opts.Commit, log: opts.Logger.With("svc", "ota"),
		running: map[string]context.CancelCauseFunc{}}
	if err := u.pruneDone(); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	return u, nil
}

// Result is the success result of an update command.
type Result struct {
	Release   string   `cbor:"release,omitempty"`
	Installed []string `cbor:"installed,omitempty"` // name@version
	Skipped   []string `cbor:"skipped,omitempty"`   // already at that version
	Removed   []string `cbor:"removed,omitempty"`   // apps.set uninstalls
	Slot      string   `cbor:"slot,omitempty"`      // agent slot now active
	Refetched int64    `cbor:"refetched,omitempty"` // bytes fetched twice because of interruptions
	Resumes   int      `cbor:"resumes,omitempty"`
}

// Status is what statistics and the diagnostics port show.
type Status struct {
	Job       string               `cbor:"job,omitempty"`
	Kind      string               `cbor:"kind,omitempty"`
	Stage     Stage                `cbor:"stage,omitempty"`
	Progress  int                  `cbor:"progress,omitempty"`
	Release   string               `cbor:"release,omitempty"`
	Installed map[string]Installed `cbor:"installed,omitempty"`
	Slot      string               `cbor:"slot,omitempty"`
}

// Status returns a snapshot.
func (u *Updater) Status() Status {
	inst, _ := u.installed()
	s := Status{Installed: inst, Slot: u.opts.Slot}
	u.mu.Lock()
	if j := u.current; j != nil {
		s.Job, s.Kind, s.Stage, s.Release, s.Progress = j.Command, j.Kind, j.Stage, j.Release, u.pct
	}
	u.mu.Unlock()
	return s
}

// run is the frame every job runs in: registered for Cancel, its context cancellable with a
// cause, reporting through rep.
type run struct {
	u   *Updater
	j   *Job
	rep Reporter
	ctx context.Context
	// refetched and resumes sum the transfers' interruptions for the result.
	refetched int64
	resumes   int
}

func (u *Updater) begin(ctx context.Context, id string, rep Reporter) (*run, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	u.mu.Lock()
	u.running[id] = cancel
	u.mu.Unlock()
	return &run{u: u, rep: rep, ctx: ctx}, func() {
		u.mu.Lock()
		delete(u.running, id)
		u.current = nil
		u.mu.Unlock()
		cancel(nil)
	}
}

func (r *run) stage(s Stage, pct int) error {
	if r.j.Stage != s {
		r.j.Stage = s
		if err := r.u.saveJob(r.ctx, r.j, nil); err != nil {
			return err
		}
	}
	r.u.mu.Lock()
	r.u.current, r.u.pct = r.j, pct
	r.u.mu.Unlock()
	return r.rep.Report(r.ctx, string(s), pct)
}

// stopped turns a context end into the right error: ota.cancel → a cancelled failure; the
// agent stopping → the context error, so the dispatcher keeps the command for the next start.
func (r *run) stopped() error {
	if errors.Is(context.Cause(r.ctx), errCancelled) {
		return &manifest.Error{Reason: ReasonCancelled, Err: errCancelled}
	}
	return r.ctx.Err()
}

// Reasons of update failures besides the manifest's.
const (
	ReasonCancelled     manifest.Reason = "cancelled"
	ReasonRolledBack    manifest.Reason = "rolled_back"
	ReasonInstallFailed manifest.Reason = "install_failed"
	ReasonNoSpace       manifest.Reason = "no_space"
	ReasonNoLauncher    manifest.Reason = "no_launcher"
	ReasonTooLate       manifest.Reason = "too_late"
)

func fail(reason manifest.Reason, component string, err error) error {
	return &manifest.Error{Reason: reason, Component: component, Err: err}
}

// Cancel stops the update command id if it has not begun installing. A command still queued
// is marked so that it fails as cancelled when its turn comes.
func (u *Updater) Cancel(ctx context.Context, id string) error {
	j, found, err := u.loadJob(id)
	if err != nil {
		return err
	}
	if found && j.Stage == StageDone {
		return fail(ReasonTooLate, "", fmt.Errorf("update %s has finished", id))
	}
	if found && (j.Stage == StageInstalling || j.Stage == StageRebooting || j.Stage == StageHealthCheck) {
		return fail(ReasonTooLate, "", fmt.Errorf("update %s is %s: it can no longer be cancelled", id, j.Stage))
	}
	if err := u.commit.Do(ctx, func(tx *bolt.Tx) error {
		return sub(tx, bucketCancels).Put([]byte(id), []byte{1})
	}); err != nil {
		return err
	}
	u.mu.Lock()
	cancel := u.running[id]
	u.mu.Unlock()
	if cancel != nil {
		cancel(errCancelled)
	}
	return nil
}

// fetch brings every item not yet fetched to a verified file, reporting bytes as 0..70 %.
func (r *run) fetch() error {
	var total, done int64
	for _, it := range r.j.Items {
		total += it.Component.Size
		if it.Fetched {
			done += it.Component.Size
		}
	}
	if err := r.stage(StageDownloading, pct(done, total, 0, 70)); err != nil {
		return err
	}
	if err := r.u.checkSpace(r.j); err != nil {
		return err
	}
	for i := range r.j.Items {
		it := &r.j.Items[i]
		if it.Fetched {
			continue
		}
		src, err := r.u.opts.Source(it.Component, it.Source)
		if err != nil {
			return fail(manifest.ReasonInvalid, it.Component.Name, err)
		}
		base := done
		t := &transfer.Transfer{
			Path: r.u.file(it.Component), Size: it.Component.Size, SHA256: it.Component.SHA256,
			Source: src, State: r.u.checkpoints(r.j.Command, it.Component.Name), Logger: r.u.log,
			Progress: func(d, _ int64) {
				p := pct(base+d, total, 0, 70)
				r.u.mu.Lock()
				r.u.pct = p
				r.u.mu.Unlock()
				_ = r.rep.Report(r.ctx, string(StageDownloading), p)
			},
		}
		cp, err := t.Run(r.ctx)
		r.refetched += cp.Refetched
		r.resumes += cp.Resumes
		if err != nil {
			if r.ctx.Err() != nil {
				return r.stopped()
			}
			var me *manifest.Error
			if errors.As(err, &me) {
				if me.Component == "" {
					me.Component = it.Component.Name
				}
				return me
			}
			return fail(ReasonInstallFailed, it.Component.Name, fmt.Errorf("download: %w", err))
		}
		done += it.Component.Size
		it.Fetched = true
		if err := r.u.saveJob(r.ctx, r.j, nil); err != nil {
			return err
		}
	}
	return nil
}

// verify hashes every downloaded file again from flash before anything is installed: the
// transfer checked the bytes as they came, this checks what storage kept.
func (r *run) verify() error {
	if err := r.stage(StageVerifying, 72); err != nil {
		return err
	}
	for i := range r.j.Items {
		it := &r.j.Items[i]
		if it.Installed {
			continue
		}
		if err := hashFile(r.u.file(it.Component), it.Component.Size, it.Component.SHA256); err != nil {
			// Storage lost it: the next run downloads it again.
			_ = os.Remove(r.u.file(it.Component))
			it.Fetched = false
			_ = r.u.saveJob(r.ctx, r.j, func(tx *bolt.Tx) error {
				return sub(tx, bucketXfer).Delete([]byte(r.j.Command + "/" + it.Component.Name))
			})
			return err
		}
	}
	return nil
}

// prepare downloads and verifies what the job has not installed yet, unless it got past that.
func (r *run) prepare() error {
	if r.j.Stage.before(StageVerifying) {
		if err := r.fetch(); err != nil {
			return err
		}
	}
	if r.j.Stage.before(StageInstalling) {
		return r.verify()
	}
	return nil
}

// wait holds the job until the terminal is quiet. The release is held through installing. A
// job resumed in installing waits again (without going back a stage): payments must not
// start in the middle of an install.
func (r *run) wait() (func(), error) {
	if r.j.Stage.before(StageInstalling) {
		if err := r.stage(StageWaiting, 75); err != nil {
			return nil, err
		}
	}
	release, err := r.u.opts.Gate.Wait(r.ctx, GatePolicy{Window: !r.j.Now, Settled: r.j.Settled})
	if err != nil {
		if r.ctx.Err() != nil {
			return nil, r.stopped()
		}
		return nil, err
	}
	return release, nil
}

func (u *Updater) file(c manifest.Component) string {
	return filepath.Join(u.opts.Dir, hex.EncodeToString(c.SHA256))
}

// removeFiles deletes a job's downloads (and half-downloads).
func (u *Updater) removeFiles(j *Job) {
	for _, it := range j.Items {
		p := u.file(it.Component)
		_ = os.Remove(p)
		_ = os.Remove(p + ".part")
	}
}

// checkSpace refuses a download the flash cannot hold, before a byte is fetched.
func (u *Updater) checkSpace(j *Job) error {
	var need int64
	for _, it := range j.Items {
		if !it.Fetched {
			need += it.Component.Size
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(u.opts.Dir, &st); err != nil {
		return nil // unknown: the write itself will tell
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	// Slot copies and installers need room too: keep twice the download plus 16 MiB.
	if free < 2*need+16<<20 {
		return fail(ReasonNoSpace, "", fmt.Errorf("%d bytes free, %d needed", free, 2*need+16<<20))
	}
	return nil
}

func hashFile(path string, size int64, want []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fail(manifest.ReasonTruncated, "", fmt.Errorf("downloaded file: %w", err))
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fail(manifest.ReasonTruncated, "", fmt.Errorf("read %s: %w", path, err))
	}
	if n != size {
		return fail(manifest.ReasonTruncated, "", fmt.Errorf("%d bytes on flash, %d expected", n, size))
	}
	if got := h.Sum(nil); !slices.Equal(got, want) {
		return fail(manifest.ReasonHashMismatch, "", fmt.Errorf("sha-256 on flash %x, expected %x", got, want))
	}
	return nil
}

func pct(done, total int64, from, to int) int {
	if total <= 0 {
		return to
	}
	return from + int(done*int64(to-from)/total)
}

// waitCtx blocks until the job's context ends (the agent stopping for a restart) and returns
// what the dispatcher must see to keep the command for the next process.
func (r *run) waitCtx() error {
	<-r.ctx.Done()
	return r.stopped()
}
