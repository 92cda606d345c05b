package apktest

import (
	"errors"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func pm(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command("pm", args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case strings.Contains(err.Error(), "executable file not found"):
		t.Fatal("fake pm is not on PATH")
	case !errors.As(err, &exit):
		t.Fatal(err)
	}
	return string(out), exit.ExitCode()
}

func TestFakePM(t *testing.T) {
	f := Install(t)
	dir := t.TempDir()
	f.Preinstall("com.vendor.app", 3)
	if out, code := pm(t, "install", "-r", MakeAPK(t, dir, "com.shop.pay", 12)); code != 0 || !strings.Contains(out, "Success") {
		t.Fatalf("install: %d %q", code, out)
	}
	out, code := pm(t, "list", "packages", "--show-versioncode", "-3")
	if code != 0 || out != "package:com.shop.pay versionCode:12\npackage:com.vendor.app versionCode:3\n" {
		t.Fatalf("list: %d %q", code, out)
	}
	if out, code := pm(t, "install", "-r", MakeAPK(t, dir, "com.shop.pay", 11)); code != 1 || !strings.Contains(out, "Failure [INSTALL_FAILED_VERSION_DOWNGRADE]") {
		t.Fatalf("downgrade: %d %q", code, out)
	}
	f.FailOn("install", "com.shop.new")
	if out, code := pm(t, "install", "-r", MakeAPK(t, dir, "com.shop.new", 1)); code != 1 || !strings.Contains(out, "Failure [INSTALL_FAILED_INTERNAL_ERROR]") {
		t.Fatalf("FailOn: %d %q", code, out)
	}
	if _, code := pm(t, "install", "-r", dir); code != 1 {
		t.Fatal("a directory installed")
	}
	if out, code := pm(t, "uninstall", "com.vendor.app"); code != 0 || !strings.Contains(out, "Success") {
		t.Fatalf("uninstall: %d %q", code, out)
	}
	if _, code := pm(t, "list", "packages"); code != 1 {
		t.Fatal("list without the agent's flags accepted")
	}
	if got := f.Installed(); !maps.Equal(got, map[string]int64{"com.shop.pay": 12}) {
		t.Fatalf("installed %v", got)
	}
	calls := f.Calls()
	if len(calls) != 7 || calls[1] != "list packages --show-versioncode -3" || calls[5] != "uninstall com.vendor.app" ||
		!slices.Equal(strings.Fields(calls[0])[:2], []string{"install", "-r"}) {
		t.Fatalf("calls %q", calls)
	}
}
