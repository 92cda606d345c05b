package profiles

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/board/generic"
)

var quiet = board.Options{Logger: slog.New(slog.DiscardHandler)}

func TestModelsAreValidAndMarked(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All() {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
		if len(p.Confirm) == 0 {
			t.Errorf("%s: nothing marked to confirm on the hardware", p.Name)
		}
		if len(p.Match.AndroidModel)+len(p.Match.DeviceTree) == 0 {
			t.Errorf("%s: cannot be detected", p.Name)
		}
		for _, m := range p.Match.AndroidModel {
			if seen[m] {
				t.Errorf("%s: model string %q claimed twice", p.Name, m)
			}
			seen[m] = true
		}
	}
	for _, name := range []string{"wiseasy-wpos3", "ingenico-t3", "feitian-f20"} {
		if _, ok := Get(name); !ok {
			t.Errorf("no profile %s", name)
		}
	}
}

func TestProfilesAreCopies(t *testing.T) {
	p, _ := Get("feitian-f20")
	p.Serial[0].Port.Path = "/dev/changed"
	p.Printer.CodePages[0].Number = 99
	again, _ := Get("feitian-f20")
	if again.Serial[0].Port.Path == "/dev/changed" || again.Printer.CodePages[0].Number == 99 {
		t.Error("a caller changed the built-in table")
	}
}

// fakeAndroid puts a getprop on PATH that answers ro.product.model with model.
func fakeAndroid(t *testing.T, model string) {
	t.Helper()
	bin := t.TempDir()
	script := "#!/bin/sh\n[ \"$1\" = ro.product.model ] && echo '" + model + "'\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "getprop"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func deviceTree(t *testing.T, model string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc/device-tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/device-tree/model"), []byte(model+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestDetectFromAndroidProperty(t *testing.T) {
	fakeAndroid(t, "F20")
	// The device tree names only the SoC on Android; the property decides.
	p, ok := detect(deviceTree(t, "Qualcomm Technologies, Inc. SDM450"))
	if !ok || p.Name != "feitian-f20" {
		t.Errorf("detected %q %v", p.Name, ok)
	}
}

func TestDetectFromDeviceTree(t *testing.T) {
	fakeAndroid(t, "")
	p, ok := detect(deviceTree(t, "Ingenico T3 rev C"))
	if !ok || p.Name != "ingenico-t3" {
		t.Errorf("detected %q %v", p.Name, ok)
	}
	if p, ok := detect(deviceTree(t, "Raspberry Pi 4 Model B")); ok {
		t.Errorf("unknown board detected as %s", p.Name)
	}
}

func TestSelectionByName(t *testing.T) {
	fakeAndroid(t, "")
	b, err := board.Open("wiseasy-wpos3", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != "wiseasy-wpos3" || b.Profile().Printer.WidthDots != 384 || !b.Profile().PINPad.Internal {
		t.Errorf("board %s profile %+v", b.Name(), b.Profile())
	}
	// Nothing from the platform: the identity falls back to the profile's.
	if id := b.Identity(); id.Vendor != "Wiseasy" || id.Model != "WPOS-3" {
		t.Errorf("identity %+v", id)
	}
}

func TestAutoDetection(t *testing.T) {
	fakeAndroid(t, "WPOS-3")
	b, err := board.Open(Auto, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != "wiseasy-wpos3" {
		t.Errorf("auto chose %s", b.Name())
	}

	fakeAndroid(t, "Pixel 8")
	configured := &board.Profile{Name: "bench"}
	b2, err := board.Open(Auto, board.Options{Logger: quiet.Logger, Profile: configured})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if b2.Name() != generic.LinuxGeneric || b2.Profile().Name != "bench" {
		t.Errorf("unknown model: board %s profile %s", b2.Name(), b2.Profile().Name)
	}
}
