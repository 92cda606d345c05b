package update

import (
	"context"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/ota/install/apk"
	"github.com/posagent/posagent/ota/manifest"
)

// SetApps runs apps.set: the terminal's Android packages become the signed set. Packages the
// agent installed earlier and the set no longer names are removed; the platform's own packages
// are never touched.
func (u *Updater) SetApps(ctx context.Context, rep Reporter, id string, b *AppsBody) (*Result, error) {
	return u.runJob(ctx, rep, id, func() (*Job, error) { return u.planApps(ctx, id, b) }, (*run).apps)
}

func (u *Updater) planApps(ctx context.Context, id string, b *AppsBody) (*Job, error) {
	if u.opts.Apps == nil {
		return nil, fail(manifest.ReasonWrongModel, "", errors.New("this terminal has no Android package manager"))
	}
	s := b.Signed()
	if s == nil {
		return nil, fail(manifest.ReasonInvalid, "", errors.New("manifest not verified"))
	}
	serials, digests, err := u.highWater()
	if err != nil {
		return nil, err
	}
	if hw, ok := serials[s.KeyID]; ok && hw == s.Release.Serial && !slices.Equal(digests[s.KeyID], s.Digest[:]) {
		return nil, fail(manifest.ReasonRollback, "", fmt.Errorf("serial %d was already used by another release of key %s", hw, s.KeyID))
	}
	names := make([]string, 0, len(b.Sources))
	for n := range b.Sources {
		names = append(names, n)
	}
	// The package manager, not our records, says what is installed: Check sees nothing
	// installed, so every APK of the set for this model comes back and Diff decides.
	comps, err := s.Check(manifest.Terminal{Model: u.opts.Model, Arch: u.opts.Arch, Now: u.opts.Now(),
		Installed: map[string]string{}, HighWater: serials, MaxSize: u.opts.MaxSize}, names)
	if err != nil {
		return nil, err
	}
	have, err := u.opts.Apps.Installed(ctx)
	if err != nil {
		return nil, fail(ReasonInstallFailed, "", fmt.Errorf("package list: %w", err))
	}
	managed, err := u.managed()
	if err != nil {
		return nil, err
	}
	desired := make([]apk.App, 0, len(comps))
	byPkg := map[string]manifest.Component{}
	for _, c := range comps {
		desired = append(desired, apk.App{Package: c.Package, VersionCode: c.VersionCode})
		byPkg[c.Package] = c
	}
	plan := apk.Diff(desired, have, managed)
	j := &Job{Command: id, Kind: "apps.set", Stage: StageDownloading, Release: s.Release.Name, Serial: s.Release.Serial,
		KeyID: s.KeyID, Started: u.opts.Now().Unix(), Settled: b.RequireSettled, Now: b.Now, Uninstall: plan.Uninstall}
	for _, a := range plan.Install {
		c := byPkg[a.Package]
		if v, ok := have[a.Package]; ok && v > c.VersionCode {
			return nil, fail(manifest.ReasonDowngrade, c.Name, fmt.Errorf("%s versionCode %d is installed, the set has %d", a.Package, v, c.VersionCode))
		}
		j.Items = append(j.Items, Item{Component: c, Source: b.Sources[c.Name]})
	}
	if err := u.saveJob(ctx, j, func(tx *bolt.Tx) error {
		return putHighWater(tx, s.KeyID, s.Release.Serial, s.Digest[:])
	}); err != nil {
		return nil, err
	}
	u.log.Info("app set planned", "cmd", id, "set", j.Release, "install", len(j.Items), "uninstall", len(j.Uninstall))
	return j, nil
}

func (r *run) apps() (*Result, error) {
	j := r.j
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
	steps := int64(len(j.Items) + len(j.Uninstall))
	done := int64(0)
	for i := range j.Items {
		it := &j.Items[i]
		c := it.Component
		done++
		if !it.Installed {
			if err := r.u.opts.Apps.Install(r.ctx, r.u.file(c)); err != nil {
				if r.ctx.Err() != nil {
					return nil, r.stopped()
				}
				return nil, fail(ReasonInstallFailed, c.Name, err)
			}
			it.Installed = true
			if err := r.u.saveJob(r.ctx, j, func(tx *bolt.Tx) error {
				if err := putInstalled(tx, c.Name, Installed{Version: c.Version, Kind: c.Kind, Release: j.Release, SHA256: c.SHA256, At: r.u.opts.Now().Unix()}); err != nil {
					return err
				}
				return r.u.editManaged(tx, func(m []string) []string {
					if !slices.Contains(m, c.Package) {
						m = append(m, c.Package)
					}
					return m
				})
			}); err != nil {
				return nil, err
			}
		}
		res.Installed = append(res.Installed, c.Package+"@"+fmt.Sprint(c.VersionCode))
		_ = r.rep.Report(r.ctx, string(StageInstalling), pct(done, steps, 80, 99))
	}
	for len(j.Uninstall) > 0 {
		pkg := j.Uninstall[0]
		done++
		if err := r.u.opts.Apps.Uninstall(r.ctx, pkg); err != nil {
			if r.ctx.Err() != nil {
				return nil, r.stopped()
			}
			// Already gone (removed by hand) is what we wanted.
			if have, lerr := r.u.opts.Apps.Installed(r.ctx); lerr != nil || have[pkg] != 0 {
				return nil, fail(ReasonInstallFailed, pkg, err)
			}
		}
		j.Uninstall = j.Uninstall[1:]
		if err := r.u.saveJob(r.ctx, j, func(tx *bolt.Tx) error {
			return r.u.editManaged(tx, func(m []string) []string {
				return slices.DeleteFunc(m, func(p string) bool { return p == pkg })
			})
		}); err != nil {
			return nil, err
		}
		res.Removed = append(res.Removed, pkg)
		_ = r.rep.Report(r.ctx, string(StageInstalling), pct(done, steps, 80, 99))
	}
	res.Refetched, res.Resumes = r.refetched, r.resumes
	return res, nil
}

// managed is the set of packages the agent installed (and may therefore remove).
func (u *Updater) managed() ([]string, error) {
	var m []string
	err := u.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketOTA).Get(keyManaged)
		if v == nil {
			return nil
		}
		return tmsproto.Unmarshal(v, &m)
	})
	return m, err
}

func (u *Updater) editManaged(tx *bolt.Tx, edit func([]string) []string) error {
	var m []string
	if v := tx.Bucket(bucketOTA).Get(keyManaged); v != nil {
		if err := tmsproto.Unmarshal(v, &m); err != nil {
			return err
		}
	}
	m = edit(m)
	slices.Sort(m)
	v, err := tmsproto.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketOTA).Put(keyManaged, v)
}

// PutFile runs file.put: one file to a named location, replaced atomically, the previous kept.
func (u *Updater) PutFile(ctx context.Context, rep Reporter, id string, b *FileBody) (*Result, error) {
	return u.runJob(ctx, rep, id, func() (*Job, error) {
		if _, err := u.opts.Files.Path(b.Location, b.Name); err != nil {
			return nil, fail(manifest.ReasonInvalid, b.Name, err)
		}
		c := manifest.Component{Name: b.Name, Kind: manifest.KindFile, Size: b.Size, SHA256: b.SHA256, Location: b.Location, Path: b.Name}
		j := &Job{Command: id, Kind: "file.put", Stage: StageDownloading, Started: u.opts.Now().Unix(),
			Location: b.Location, Name: b.Name, Items: []Item{{Component: c, Source: b.SourceSpec}}}
		return j, u.saveJob(ctx, j, nil)
	}, (*run).file)
}

func (r *run) file() (*Result, error) {
	j := r.j
	if err := r.prepare(); err != nil {
		return nil, err
	}
	if err := r.stage(StageInstalling, 90); err != nil {
		return nil, err
	}
	it := &j.Items[0]
	if err := r.u.opts.Files.Put(j.Location, j.Name, r.u.file(it.Component)); err != nil {
		return nil, fail(ReasonInstallFailed, j.Name, err)
	}
	path, _ := r.u.opts.Files.Path(j.Location, j.Name)
	r.u.log.Info("file installed", "location", j.Location, "name", j.Name, "path", path)
	return &Result{Installed: []string{j.Location + "/" + j.Name}, Refetched: r.refetched, Resumes: r.resumes}, nil
}
