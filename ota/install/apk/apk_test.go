package apk_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posagent/posagent/ota/install/apk"
	"github.com/posagent/posagent/ota/install/apk/apktest"
)

// The whole cycle against the fake pm: list, plan, install, uninstall; the vendor's app and
// the merchant's own app are never touched.
func TestPlanAndApplyOnFakeDevice(t *testing.T) {
	fake := apktest.Install(t)
	fake.Preinstall("com.vendor.launcher", 7) // not managed: must stay
	fake.Preinstall("com.shop.loyalty", 3)    // managed, still desired at 3: kept
	fake.Preinstall("com.shop.old", 1)        // managed, no longer desired: removed
	fake.Preinstall("com.shop.pay", 10)       // managed, desired at 11: upgraded
	dir := t.TempDir()
	desired := []apk.App{
		{Package: "com.shop.pay", VersionCode: 11, File: apktest.MakeAPK(t, dir, "com.shop.pay", 11)},
		{Package: "com.shop.loyalty", VersionCode: 3, File: apktest.MakeAPK(t, dir, "com.shop.loyalty", 3)},
		{Package: "com.shop.new", VersionCode: 1, File: apktest.MakeAPK(t, dir, "com.shop.new", 1)},
	}
	managed := []string{"com.shop.loyalty", "com.shop.old", "com.shop.pay", "com.shop.gone"}

	var pm apk.PM
	ctx := context.Background()
	installed, err := pm.Installed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := fake.Installed(); !maps.Equal(installed, want) {
		t.Fatalf("Installed %v, fake has %v", installed, want)
	}
	plan := apk.Diff(desired, installed, managed)
	if got := packages(plan.Install); !slices.Equal(got, []string{"com.shop.new", "com.shop.pay"}) {
		t.Fatalf("install %v", got)
	}
	if !slices.Equal(plan.Uninstall, []string{"com.shop.old"}) || !slices.Equal(plan.Keep, []string{"com.shop.loyalty"}) {
		t.Fatalf("uninstall %v keep %v", plan.Uninstall, plan.Keep)
	}
	for _, a := range plan.Install {
		if err := pm.Install(ctx, a.File); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range plan.Uninstall {
		if err := pm.Uninstall(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int64{"com.vendor.launcher": 7, "com.shop.loyalty": 3, "com.shop.pay": 11, "com.shop.new": 1}
	if got := fake.Installed(); !maps.Equal(got, want) {
		t.Fatalf("device has %v, want %v", got, want)
	}
	wantCalls := []string{
		"list packages --show-versioncode -3",
		"install -r " + desired[2].File,
		"install -r " + desired[0].File,
		"uninstall com.shop.old",
	}
	if got := fake.Calls(); !slices.Equal(got, wantCalls) {
		t.Fatalf("calls\n%q\nwant\n%q", got, wantCalls)
	}
	// Applied: the next plan is empty.
	installed, err = pm.Installed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := apk.Diff(desired, installed, managed); !p.Empty() {
		t.Fatalf("second plan not empty: %+v", p)
	}
}

func packages(apps []apk.App) []string {
	var out []string
	for _, a := range apps {
		out = append(out, a.Package)
	}
	return out
}

func TestInstallFailureIsTyped(t *testing.T) {
	fake := apktest.Install(t)
	fake.FailOn("install", "com.shop.pay")
	file := apktest.MakeAPK(t, t.TempDir(), "com.shop.pay", 4)
	err := apk.PM{}.Install(context.Background(), file)
	var pe *apk.PMError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T)", err, err)
	}
	if pe.Op != "install" || pe.Code != "INSTALL_FAILED_INTERNAL_ERROR" || pe.ExitCode != 1 || pe.Target != file {
		t.Fatalf("%+v", pe)
	}
	if _, ok := fake.Installed()["com.shop.pay"]; ok {
		t.Fatal("a failed install left the package installed")
	}
	fake.Heal("install", "com.shop.pay")
	if err := (apk.PM{}).Install(context.Background(), file); err != nil {
		t.Fatal(err)
	}
}

func TestInstallDowngradeRefused(t *testing.T) {
	fake := apktest.Install(t)
	fake.Preinstall("com.shop.pay", 9)
	err := apk.PM{}.Install(context.Background(), apktest.MakeAPK(t, t.TempDir(), "com.shop.pay", 8))
	var pe *apk.PMError
	if !errors.As(err, &pe) || pe.Code != "INSTALL_FAILED_VERSION_DOWNGRADE" {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(err.Error(), "INSTALL_FAILED_VERSION_DOWNGRADE") {
		t.Fatalf("message %q", err)
	}
	if fake.Installed()["com.shop.pay"] != 9 {
		t.Fatal("installed version changed")
	}
}

func TestInstallRelativePathBecomesAbsolute(t *testing.T) {
	fake := apktest.Install(t)
	dir := t.TempDir()
	apktest.MakeAPK(t, dir, "com.shop.pay", 2)
	t.Chdir(dir)
	if err := (apk.PM{}).Install(context.Background(), "com.shop.pay-2.apk"); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls()
	if len(calls) != 1 || !strings.HasPrefix(calls[0], "install -r /") {
		t.Fatalf("calls %q", calls)
	}
}

func TestUninstall(t *testing.T) {
	fake := apktest.Install(t)
	fake.Preinstall("com.shop.a", 1)
	fake.Preinstall("com.shop.b", 1)
	fake.FailOn("uninstall", "com.shop.b")
	pm := apk.PM{}
	ctx := context.Background()
	if err := pm.Uninstall(ctx, "com.shop.a"); err != nil {
		t.Fatal(err)
	}
	var pe *apk.PMError
	if err := pm.Uninstall(ctx, "com.shop.b"); !errors.As(err, &pe) || pe.Code != "DELETE_FAILED_INTERNAL_ERROR" {
		t.Fatalf("error %v", err)
	}
	if err := pm.Uninstall(ctx, "com.shop.absent"); !errors.As(err, &pe) || pe.Code != "DELETE_FAILED_INTERNAL_ERROR" {
		t.Fatalf("absent package: %v", err)
	}
	for _, bad := range []string{"", "-k", "com..x", "com/x", "1com.x", "com.x y"} {
		if err := pm.Uninstall(ctx, bad); !errors.Is(err, apk.ErrInvalidPackage) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
	if got := fake.Installed(); !maps.Equal(got, map[string]int64{"com.shop.b": 1}) {
		t.Fatalf("device has %v", got)
	}
	if n := len(fake.Calls()); n != 3 {
		t.Fatalf("%d pm calls, want 3 (invalid names never reach pm)", n)
	}
}

func TestListFailure(t *testing.T) {
	fake := apktest.Install(t)
	fake.FailOn("list", "")
	_, err := apk.PM{}.Installed(context.Background())
	var pe *apk.PMError
	if !errors.As(err, &pe) || pe.ExitCode != 1 || !strings.Contains(pe.Output, "Package Manager") {
		t.Fatalf("error %v", err)
	}
}

// fakePM writes a one-off pm script.
func fakePM(t *testing.T, body string) apk.PM {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pm")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return apk.PM{Path: path}
}

// Older Android exits 0 after a failure; a silent exit 0 is not a success either.
func TestExitZeroIsNotEnough(t *testing.T) {
	file := apktest.MakeAPK(t, t.TempDir(), "com.x", 1)
	var pe *apk.PMError
	err := fakePM(t, `echo "Failure [INSTALL_FAILED_UPDATE_INCOMPATIBLE: Package com.x signatures do not match]"`).Install(context.Background(), file)
	if !errors.As(err, &pe) || pe.Code != "INSTALL_FAILED_UPDATE_INCOMPATIBLE" || pe.ExitCode != 0 {
		t.Fatalf("error %v", err)
	}
	err = fakePM(t, `echo "Performing Streamed Install"`).Install(context.Background(), file)
	if !errors.As(err, &pe) || pe.Code != "" || !strings.Contains(err.Error(), "no Success") {
		t.Fatalf("error %v", err)
	}
}

func TestUnparseableListIsAnError(t *testing.T) {
	_, err := fakePM(t, `echo "package:com.x versionCode:1"; echo "Warning: something"`).Installed(context.Background())
	var perr *apk.ParseError
	if !errors.As(err, &perr) || perr.Line != 2 {
		t.Fatalf("error %v", err)
	}
}

func TestPMTimeout(t *testing.T) {
	pm := fakePM(t, `sleep 60 & wait`)
	pm.Timeout = 200 * time.Millisecond
	_, err := pm.Installed(context.Background())
	var pe *apk.PMError
	if !errors.As(err, &pe) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
}

func TestPMMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := apk.PM{}.Installed(context.Background())
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("error %v", err)
	}
}

func TestParseList(t *testing.T) {
	got, err := apk.ParseList([]byte("package:com.a versionCode:12\r\n\npackage:com.b_2.X versionCode:0\n  \npackage:c versionCode:9223372036854775807"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"com.a": 12, "com.b_2.X": 0, "c": 9223372036854775807}
	if !maps.Equal(got, want) {
		t.Fatalf("%v", got)
	}
	if got, err := apk.ParseList(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	bad := map[string]string{
		"no prefix":        "com.a versionCode:1",
		"no versionCode":   "package:com.a",
		"path form":        "package:/data/app/base.apk=com.a versionCode:1",
		"negative":         "package:com.a versionCode:-1",
		"plus sign":        "package:com.a versionCode:+1",
		"overflow":         "package:com.a versionCode:9223372036854775808",
		"trailing":         "package:com.a versionCode:1 uid:1000",
		"empty code":       "package:com.a versionCode:",
		"bad package":      "package:com..a versionCode:1",
		"digit first":      "package:com.1a versionCode:1",
		"duplicate":        "package:com.a versionCode:1\npackage:com.a versionCode:2",
		"double space":     "package:com.a  versionCode:1",
		"leading space":    " package:com.a versionCode:1",
		"error from pm":    "Error: could not access the Package Manager.",
		"empty package":    "package: versionCode:1",
		"nul in package":   "package:com.a\x00 versionCode:1",
		"utf-8 in name":    "package:com.ä versionCode:1",
		"garbage after ok": "package:com.a versionCode:1\n\x01\x02",
	}
	for name, in := range bad {
		var perr *apk.ParseError
		if _, err := apk.ParseList([]byte(in)); !errors.As(err, &perr) {
			t.Errorf("%s: %v, want *ParseError", name, err)
		}
	}
}

func TestDiff(t *testing.T) {
	a := func(p string, v int64) apk.App { return apk.App{Package: p, VersionCode: v, File: p + ".apk"} }
	cases := map[string]struct {
		desired   []apk.App
		installed map[string]int64
		managed   []string
		want      apk.Plan
	}{
		"fresh": {
			desired: []apk.App{a("z.b", 1), a("a.b", 2)},
			want:    apk.Plan{Install: []apk.App{a("a.b", 2), a("z.b", 1)}},
		},
		"unmanaged never uninstalled": {
			installed: map[string]int64{"vendor.app": 1, "shop.app": 2},
			managed:   []string{"shop.app"},
			want:      apk.Plan{Uninstall: []string{"shop.app"}},
		},
		"managed but already gone": {
			managed: []string{"shop.app"},
			want:    apk.Plan{},
		},
		"other versionCode either way": {
			desired:   []apk.App{a("up.app", 5), a("down.app", 5), a("same.app", 5)},
			installed: map[string]int64{"up.app": 4, "down.app": 6, "same.app": 5},
			want:      apk.Plan{Install: []apk.App{a("down.app", 5), a("up.app", 5)}, Keep: []string{"same.app"}},
		},
		"desired unmanaged app installed is taken over": {
			desired:   []apk.App{a("vendor.app", 2)},
			installed: map[string]int64{"vendor.app": 1},
			want:      apk.Plan{Install: []apk.App{a("vendor.app", 2)}},
		},
		"duplicates count once, first wins": {
			desired:   []apk.App{a("x.app", 1), a("x.app", 2)},
			installed: map[string]int64{"m.app": 1, "n.app": 1},
			managed:   []string{"n.app", "m.app", "n.app"},
			want:      apk.Plan{Install: []apk.App{a("x.app", 1)}, Uninstall: []string{"m.app", "n.app"}},
		},
	}
	for name, c := range cases {
		got := apk.Diff(c.desired, c.installed, c.managed)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", name, got, c.want)
		}
	}
}
