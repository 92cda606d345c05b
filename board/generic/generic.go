// Package generic is the board profile for any Linux or Android device: it finds the
// identity the platform publishes and has no devices of its own (a terminal model's profile
// adds them).
//
// Sources, first non-empty wins: Android properties (getprop), the device tree (ARM boards)
// and DMI (x86 machines). Options.Serial overrides the serial number.
package generic

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/posagent/posagent/board"
)

// Name is the name the profile is registered under.
const Name = "generic"

func init() {
	board.Register(Name, func(o board.Options) (board.Board, error) { return Open(o), nil })
}

// Board is the generic profile.
type Board struct {
	id board.Identity
}

// Open reads the identity of the machine it runs on.
func Open(o board.Options) *Board {
	id := discover("/", getprop)
	if o.Serial != "" {
		id.Serial = o.Serial
	}
	b := &Board{id: id}
	o.Log().Info("board identity", "board", Name, "vendor", id.Vendor, "model", id.Model,
		"serial", id.Serial, "revision", id.Revision)
	return b
}

// Name implements board.Board.
func (b *Board) Name() string { return Name }

// Identity implements board.Board.
func (b *Board) Identity() board.Identity { return b.id }

// Devices implements board.Board: the generic profile knows of none.
func (b *Board) Devices() []board.DeviceState { return nil }

// Close implements board.Board.
func (b *Board) Close() error { return nil }

// discover reads identity files under root; prop reads an Android property ("" if none).
func discover(root string, prop func(string) string) board.Identity {
	file := func(p string) func() string {
		return func() string { return readValue(filepath.Join(root, p)) }
	}
	get := func(name string) func() string { return func() string { return prop(name) } }
	return board.Identity{
		Vendor: first(get("ro.product.manufacturer"), file("sys/class/dmi/id/sys_vendor"),
			func() string { return compatibleVendor(filepath.Join(root, "proc/device-tree/compatible")) }),
		Model: first(get("ro.product.model"), file("proc/device-tree/model"),
			file("sys/class/dmi/id/product_name")),
		Serial: first(get("ro.serialno"), file("proc/device-tree/serial-number"),
			file("sys/class/dmi/id/product_serial")),
		Revision: first(get("ro.boot.hardware.revision"), get("ro.revision"),
			file("sys/class/dmi/id/product_version")),
	}
}

func first(sources ...func() string) string {
	for _, s := range sources {
		if v := clean(s()); v != "" && !placeholder(v) {
			return v
		}
	}
	return ""
}

// maxValue bounds one identity string; real ones are a few dozen bytes.
const maxValue = 128

// readValue reads a small sysfs/procfs value; device-tree strings end in NUL.
func readValue(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, maxValue)
	n, _ := f.Read(buf)
	return string(buf[:n])
}

// compatibleVendor is the vendor prefix of the device tree's most specific "compatible"
// entry, e.g. "raspberrypi" from "raspberrypi,4-model-b\0brcm,bcm2711\0".
func compatibleVendor(path string) string {
	v := readValue(path)
	entry, _, _ := strings.Cut(v, "\x00")
	vendor, _, ok := strings.Cut(entry, ",")
	if !ok {
		return ""
	}
	return vendor
}

// clean trims NULs and spaces and drops control characters: these strings go into MQTT
// payloads and logs.
func clean(s string) string {
	s = strings.TrimRight(s, "\x00")
	s = strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxValue {
		s = strings.ToValidUTF8(s[:maxValue], "")
	}
	return s
}

// placeholder spots the filler firmware leaves in DMI fields.
func placeholder(v string) bool {
	switch strings.ToLower(v) {
	case "to be filled by o.e.m.", "default string", "system serial number", "system product name",
		"system manufacturer", "not specified", "none", "n/a", "0", "unknown", "0123456789":
		return true
	}
	return false
}

// getprop reads an Android system property; "" where there is no getprop.
func getprop(name string) string {
	bin, err := exec.LookPath("getprop")
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, name).Output()
	if err != nil || len(out) > 4*maxValue {
		return ""
	}
	return string(bytes.TrimSpace(out))
}
