package update

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/ota/manifest"
	"github.com/posagent/posagent/ota/slots"
)

// Install runs ota.install: a signed release for this terminal. New or resumed alike, it
// continues from the job's recorded stage.
func (u *Updater) Install(ctx context.Context, rep Reporter, id string, b *InstallBody) (*Result, error) {
	return u.runJob(ctx, rep, id, func() (*Job, error) { return u.planInstall(ctx, id, b) }, (*run).install)
}

// runJob is the frame of every job kind: a finished job answers with its recorded outcome
// (the dispatcher may have lost the final ack to a power cut), a cancelled one fails, a new one
// is planned, and the outcome is recorded before it is returned.
func (u *Updater) runJob(ctx context.Context, rep Reporter, id string, plan func() (*Job, error), work func(*run) (*Result, error)) (*Result, error) {
	r, end := u.begin(ctx, id, rep)
	defer end()
	j, found, err := u.loadJob(id)
	if err != nil {
		return nil, err
	}
	if found && j.Stage == StageDone {
		return j.Outcome.result()
	}
	if u.cancelled(id) && (!found || j.Stage == StageDownloading || j.Stage == StageVerifying || j.Stage == StageWaiting) {
		if !found {
			j = &Job{Command: id}
		}
		err := fail(ReasonCancelled, "", errCancelled)
		u.finish(ctx, j, nil, err)
		return nil, err
	}
	if !found {
		if j, err = plan(); err != nil {
			// A refusal is final too: record it, so a resume answers the same.
			u.finish(ctx, &Job{Command: id}, nil, err)
			return nil, err
		}
	}
	r.j = j
	res, err := work(r)
	if err == nil || r.ctx.Err() == nil || errors.Is(context.Cause(r.ctx), errCancelled) {
		if err != nil && r.ctx.Err() != nil {
			err = r.stopped()
		}
		u.finish(ctx, j, res, err)
	}
	return res, err
}

// planInstall applies the update policy to the release and records the job, raising the
// key's high-water mark in the same transaction: from now on an older release is refused
// even if this one fails.
func (u *Updater) planInstall(ctx context.Context, id string, b *InstallBody) (*Job, error) {
	s := b.Signed()
	if s == nil {
		return nil, fail(manifest.ReasonInvalid, "", errors.New("manifest not verified"))
	}
	inst, err := u.installed()
	if err != nil {
		return nil, err
	}
	serials, digests, err := u.highWater()
	if err != nil {
		return nil, err
	}
	if hw, ok := serials[s.KeyID]; ok && hw == s.Release.Serial && !slices.Equal(digests[s.KeyID], s.Digest[:]) {
		return nil, fail(manifest.ReasonRollback, "", fmt.Errorf("serial %d was already used by another release of key %s", hw, s.KeyID))
	}
	versions := map[string]string{}
	for name, in := range inst {
		versions[name] = in.Version
	}
	names := make([]string, 0, len(b.Sources))
	for n := range b.Sources {
		names = append(names, n)
	}
	comps, err := s.Check(manifest.Terminal{Model: u.opts.Model, Arch: u.opts.Arch, Now: u.opts.Now(),
		Installed: versions, HighWater: serials, MaxSize: u.opts.MaxSize}, names)
	if err != nil {
		return nil, err
	}
	j := &Job{Command: id, Kind: "ota.install", Stage: StageDownloading, Release: s.Release.Name,
		Serial: s.Release.Serial, KeyID: s.KeyID, Started: u.opts.Now().Unix(), Settled: b.RequireSettled,
		Now: b.Now, MaxTries: b.MaxTries, Deadline: b.HealthDeadlineSec}
	if j.MaxTries == 0 {
		j.MaxTries = 3
	}
	if j.Deadline == 0 {
		j.Deadline = 300
	}
	for _, c := range comps {
		if c.Kind == manifest.KindAgent && u.opts.Slots == nil {
			return nil, fail(ReasonNoLauncher, c.Name, errors.New("the agent runs without its launcher (posagent launch): an agent update could not be rolled back"))
		}
		if c.Kind == manifest.KindComponent && len(u.opts.Installer.Argv) == 0 {
			return nil, fail(ReasonInstallFailed, c.Name, errors.New("this model has no system component installer"))
		}
		j.Items = append(j.Items, Item{Component: c, Source: b.Sources[c.Name]})
	}
	// The agent goes last: its switch restarts the process.
	slices.SortStableFunc(j.Items, func(a, b Item) int {
		return boolInt(a.Component.Kind == manifest.KindAgent) - boolInt(b.Component.Kind == manifest.KindAgent)
	})
	if err := u.saveJob(ctx, j, func(tx *bolt.Tx) error {
		return putHighWater(tx, s.KeyID, s.Release.Serial, s.Digest[:])
	}); err != nil {
		return nil, err
	}
	u.log.Info("update planned", "cmd", id, "release", j.Release, "serial", j.Serial, "components", len(j.Items))
	return j, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (r *run) install() (*Result, error) {
	j := r.j
	switch j.Stage {
	case StageRebooting, StageHealthCheck:
		return r.afterSwitch()
	}
	if len(j.Items) == 0 {
		return &Result{Release: j.Release}, nil // everything already at these versions
	}
	if err := r.prepare(); err != nil {
		return nil, err
	}
	release, err := r.wait()
	if err != nil {
		return nil, err
	}
	defer release()
	if err := r.stage(StageInstalling, 80); err != nil {
		return nil, err
	}
	res := &Result{Release: j.Release}
	for i := range j.Items {
		it := &j.Items[i]
		c := it.Component
		if it.Installed {
			res.Installed = append(res.Installed, c.Name+"@"+c.Version)
			continue
		}
		if c.Kind == manifest.KindAgent {
			return nil, r.switchAgent(it)
		}
		if err := r.u.installOne(r.ctx, c, r.u.file(c)); err != nil {
			if r.ctx.Err() != nil {
				return nil, r.stopped()
			}
			return nil, err
		}
		it.Installed = true
		if err := r.u.saveJob(r.ctx, j, func(tx *bolt.Tx) error {
			return putInstalled(tx, c.Name, Installed{Version: c.Version, Kind: c.Kind, Release: j.Release, SHA256: c.SHA256, At: r.u.opts.Now().Unix()})
		}); err != nil {
			return nil, err
		}
		res.Installed = append(res.Installed, c.Name+"@"+c.Version)
		_ = r.rep.Report(r.ctx, string(StageInstalling), pct(int64(i+1), int64(len(j.Items)), 80, 90))
	}
	res.Refetched, res.Resumes = r.refetched, r.resumes
	return res, nil
}

// installOne installs a downloaded component of any kind but the agent.
func (u *Updater) installOne(ctx context.Context, c manifest.Component, file string) error {
	var err error
	switch c.Kind {
	case manifest.KindComponent:
		err = u.opts.Installer.Install(ctx, file, c.Name, c.Version)
	case manifest.KindFile:
		err = u.opts.Files.Put(c.Location, c.Path, file)
	case manifest.KindCertificate:
		var pem []byte
		if pem, err = readSmall(file, 64<<10); err == nil {
			err = u.opts.Cert(ctx, c.Name, c.Location, pem)
		}
	case manifest.KindConfig:
		var raw []byte
		if raw, err = readSmall(file, 1<<20); err == nil {
			err = u.opts.Config(ctx, raw)
		}
	default:
		err = fmt.Errorf("kind %s is not installed by ota.install", c.Kind)
	}
	if err != nil {
		u.log.Warn("component install failed", "component", c.Name, "version", c.Version, "err", err)
		return fail(ReasonInstallFailed, c.Name, err)
	}
	u.log.Info("component installed", "component", c.Name, "version", c.Version, "kind", c.Kind)
	return nil
}

func readSmall(path string, max int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%d bytes, at most %d", st.Size(), max)
	}
	return os.ReadFile(path)
}

// switchAgent copies the new agent into the free slot, puts it on trial and asks for the
// restart into it. The job stays running; the next process continues in afterSwitch.
func (r *run) switchAgent(it *Item) error {
	u, j := r.u, r.j
	st, err := u.opts.Slots.State()
	if err != nil {
		return err
	}
	slot := j.Slot
	if slot == "" {
		slot = u.opts.Slots.Inactive()
		j.Slot = slot
		if err := u.saveJob(r.ctx, j, nil); err != nil {
			return err
		}
	}
	// A cut after StartTrial but before the job said rebooting finds the trial already set.
	if !(st.Trial == slot && st.Command == j.Command) {
		if err := u.opts.Slots.Install(slot, u.file(it.Component)); err != nil {
			return fail(ReasonInstallFailed, it.Component.Name, fmt.Errorf("slot %s: %w", slot, err))
		}
		launcherDeadline := time.Duration(j.Deadline)*time.Second + time.Minute
		if err := u.opts.Slots.StartTrial(slot, it.Component.Version, j.Command, j.MaxTries, launcherDeadline); err != nil {
			return fail(ReasonInstallFailed, it.Component.Name, fmt.Errorf("slot %s: %w", slot, err))
		}
	}
	if err := r.stage(StageRebooting, 90); err != nil {
		return err
	}
	u.log.Info("agent installed in its slot; restarting into it", "slot", slot, "version", it.Component.Version)
	u.opts.Restart()
	return r.waitCtx()
}

// afterSwitch runs in the process that starts after the switch: the new agent on trial does
// its health check and commits, or rolls back; the old agent, back after a rollback, reports it.
func (r *run) afterSwitch() (*Result, error) {
	u, j := r.u, r.j
	agentItem := -1
	for i, it := range j.Items {
		if it.Component.Kind == manifest.KindAgent {
			agentItem = i
		}
	}
	if agentItem < 0 || u.opts.Slots == nil {
		return nil, fail(ReasonInstallFailed, "", errors.New("update job lost its agent component or the launcher"))
	}
	c := j.Items[agentItem].Component
	st, err := u.opts.Slots.State()
	if err != nil {
		return nil, err
	}
	switch {
	case st.Last != nil && st.Last.Command == j.Command && st.Last.Result == slots.ResultRolledBack:
		// The old version is running again: the new one did not pass.
		if u.opts.Events != nil {
			u.opts.Events("ota.rolled_back", map[string]any{"command": j.Command, "release": j.Release,
				"version": c.Version, "slot": st.Last.Slot, "reason": st.Last.Reason})
		}
		return nil, fail(ReasonRolledBack, c.Name, fmt.Errorf("rolled back to %s: %s", orDev(st.ActiveVersion), st.Last.Reason))
	case st.Active == j.Slot && st.Last != nil && st.Last.Command == j.Command && st.Last.Result == slots.ResultCommitted:
		return r.committed(agentItem)
	case st.Trial == j.Slot && st.Command == j.Command && u.opts.Slot == j.Slot:
		return r.healthCheck(agentItem)
	case st.Trial == j.Slot && st.Command == j.Command:
		// Still the old process (a stop before the launcher switched): ask again.
		if err := r.stage(StageRebooting, 90); err != nil {
			return nil, err
		}
		u.opts.Restart()
		return nil, r.waitCtx()
	default:
		return nil, fail(ReasonRolledBack, c.Name, fmt.Errorf("slot %s is neither on trial nor active (active %s)", j.Slot, st.Active))
	}
}

func orDev(v string) string {
	if v == "" {
		return "the previous version"
	}
	return v
}

// healthCheck is the new agent proving itself: connected to the TMS and self-test passed,
// within the deadline. Pass → commit; fail → roll back and restart into the old slot.
func (r *run) healthCheck(agentItem int) (*Result, error) {
	u, j := r.u, r.j
	if err := r.stage(StageHealthCheck, 95); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(r.ctx, time.Duration(j.Deadline)*time.Second)
	err := u.opts.Health(hctx)
	cancel()
	if r.ctx.Err() != nil {
		return nil, r.stopped()
	}
	if err != nil {
		reason := fmt.Sprintf("health check failed: %v", err)
		if errors.Is(err, context.DeadlineExceeded) {
			reason = fmt.Sprintf("health check not passed within %ds: %v", j.Deadline, err)
		}
		u.log.Error("new agent failed its health check; rolling back", "err", err)
		if rerr := u.opts.Slots.Rollback(reason); rerr != nil && !errors.Is(rerr, slots.ErrNotOnTrial) {
			return nil, rerr
		}
		u.opts.Restart()
		return nil, r.waitCtx()
	}
	if err := u.opts.Slots.Commit(); err != nil {
		if errors.Is(err, slots.ErrNotOnTrial) {
			// The launcher's deadline won the race: it rolled back. Restart into the old slot,
			// which reports it.
			u.opts.Restart()
			return nil, r.waitCtx()
		}
		return nil, err
	}
	return r.committed(agentItem)
}

func (r *run) committed(agentItem int) (*Result, error) {
	u, j := r.u, r.j
	c := j.Items[agentItem].Component
	j.Items[agentItem].Installed = true
	if err := u.saveJob(r.ctx, j, func(tx *bolt.Tx) error {
		return putInstalled(tx, c.Name, Installed{Version: c.Version, Kind: c.Kind, Release: j.Release, SHA256: c.SHA256, At: u.opts.Now().Unix()})
	}); err != nil {
		return nil, err
	}
	if u.opts.Events != nil {
		u.opts.Events("ota.committed", map[string]any{"command": j.Command, "release": j.Release, "version": c.Version, "slot": j.Slot})
	}
	res := &Result{Release: j.Release, Slot: j.Slot}
	for _, it := range j.Items {
		res.Installed = append(res.Installed, it.Component.Name+"@"+it.Component.Version)
	}
	return res, nil
}
