package generic

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/serial"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func noProps(string) string { return "" }

func TestDeviceTreeBoard(t *testing.T) {
	root := writeTree(t, map[string]string{
		"proc/device-tree/model":         "Raspberry Pi 4 Model B Rev 1.4\x00",
		"proc/device-tree/serial-number": "10000000abcdef01\x00",
		"proc/device-tree/compatible":    "raspberrypi,4-model-b\x00brcm,bcm2711\x00",
	})
	id := discover(root, noProps)
	want := board.Identity{Vendor: "raspberrypi", Model: "Raspberry Pi 4 Model B Rev 1.4", Serial: "10000000abcdef01"}
	if id != want {
		t.Errorf("identity = %+v, want %+v", id, want)
	}
}

func TestDMIBoardSkipsPlaceholders(t *testing.T) {
	root := writeTree(t, map[string]string{
		"sys/class/dmi/id/sys_vendor":      "QEMU\n",
		"sys/class/dmi/id/product_name":    "Standard PC (Q35 + ICH9, 2009)\n",
		"sys/class/dmi/id/product_serial":  "To Be Filled By O.E.M.\n",
		"sys/class/dmi/id/product_version": "pc-q35-8.2\n",
	})
	id := discover(root, noProps)
	want := board.Identity{Vendor: "QEMU", Model: "Standard PC (Q35 + ICH9, 2009)", Revision: "pc-q35-8.2"}
	if id != want {
		t.Errorf("identity = %+v, want %+v", id, want)
	}
}

// On Android the properties name the product; the device tree only names the SoC.
func TestAndroidPropertiesWinThroughGetprop(t *testing.T) {
	bin := t.TempDir()
	script := `#!/bin/sh
case "$1" in
ro.product.manufacturer) echo Feitian ;;
ro.product.model) echo F20 ;;
ro.serialno) echo FT20A0001234 ;;
ro.revision) echo 3 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "getprop"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	root := writeTree(t, map[string]string{"proc/device-tree/model": "Qualcomm Technologies, Inc. SDM450\x00"})
	id := discover(root, getprop)
	want := board.Identity{Vendor: "Feitian", Model: "F20", Serial: "FT20A0001234", Revision: "3"}
	if id != want {
		t.Errorf("identity = %+v, want %+v", id, want)
	}
}

func TestNothingFound(t *testing.T) {
	if id := discover(t.TempDir(), noProps); id != (board.Identity{}) {
		t.Errorf("empty machine identity = %+v", id)
	}
}

func TestCleanBoundsAndStrips(t *testing.T) {
	if got := clean(" A\x01B\x00\x00"); got != "AB" {
		t.Errorf("clean = %q", got)
	}
	if got := clean(strings.Repeat("x", 500)); len(got) != maxValue {
		t.Errorf("clean kept %d bytes", len(got))
	}
}

func TestRegisteredAndSerialOverride(t *testing.T) {
	b, err := board.Open(Name, board.Options{Serial: "OVERRIDE1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != Name || b.Identity().Serial != "OVERRIDE1" || len(b.Devices()) != 0 || b.Profile().Name != LinuxGeneric {
		t.Errorf("board %s identity %+v devices %v profile %q", b.Name(), b.Identity(), b.Devices(), b.Profile().Name)
	}
	if _, err := b.Pin(board.LineDock); !errors.Is(err, board.ErrNoLine) {
		t.Errorf("pin of an empty profile: %v", err)
	}
}

// linux-generic takes its devices from the configuration's profile.
func TestLinuxGenericFromConfiguredProfile(t *testing.T) {
	n := 17
	p := &board.Profile{
		Name:   "my-kiosk",
		Vendor: "Acme", Model: "Kiosk 1",
		Serial: []board.SerialDevice{{Name: "printer", Kind: board.KindPrinter, Port: serial.Config{Path: "/dev/ttyUSB0", Baud: 115200}}},
		GPIO:   []board.GPIOLine{{Function: board.LineDrawer, Number: &n}},
	}
	b, err := board.Open(LinuxGeneric, board.Options{Profile: p, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != LinuxGeneric || b.Profile().Name != "my-kiosk" {
		t.Errorf("board %s profile %+v", b.Name(), b.Profile())
	}
	if d, ok := b.Profile().Device("printer"); !ok || d.Port.Path != "/dev/ttyUSB0" {
		t.Errorf("printer %+v", d)
	}
	bad := &board.Profile{Name: "bad", GPIO: []board.GPIOLine{{Function: "laser"}}}
	if _, err := board.Open(LinuxGeneric, board.Options{Profile: bad}); !errors.Is(err, board.ErrProfile) {
		t.Errorf("invalid configured profile: %v", err)
	}
}
