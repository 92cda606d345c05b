// Package generic is the board for any Linux or Android device: it finds the identity the
// platform publishes, and takes its devices from a profile — the one the configuration
// gives ("linux-generic", also registered as "generic"), or a terminal model's (board/profiles
// opens model boards through New).
//
// Identity sources, first non-empty wins: Android properties (getprop), the device tree
// (ARM boards) and DMI (x86 machines). Options.Serial overrides the serial number.
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

	"periph.io/x/conn/v3/gpio"

	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/board/linuxgpio"
)

// Names the board is registered under: "generic" is the configuration's default and stays
// for existing files; "linux-generic" says what it is.
const (
	Name         = "generic"
	LinuxGeneric = "linux-generic"
)

func init() {
	for _, name := range []string{Name, LinuxGeneric} {
		board.Register(name, func(o board.Options) (board.Board, error) {
			p := board.Profile{Name: LinuxGeneric}
			if o.Profile != nil {
				p = *o.Profile
			}
			return New(name, o, p)
		})
	}
}

// Board is a Linux or Android device with a profile.
type Board struct {
	name    string
	id      board.Identity
	profile board.Profile
	lines   *linuxgpio.Lines
}

// New opens a board registered as name with profile p. Vendor and model fall back to the
// profile's when the platform publishes none. GPIO lines are opened on first use.
func New(name string, o board.Options, p board.Profile) (*Board, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	id := Discover("/")
	if o.Serial != "" {
		id.Serial = o.Serial
	}
	if id.Vendor == "" {
		id.Vendor = p.Vendor
	}
	if id.Model == "" {
		id.Model = p.Model
	}
	b := &Board{name: name, id: id, profile: p, lines: linuxgpio.New(p.GPIO)}
	o.Log().Info("board identity", "board", name, "profile", p.Name, "vendor", id.Vendor, "model", id.Model,
		"serial", id.Serial, "revision", id.Revision)
	if len(p.Confirm) > 0 {
		o.Log().Warn("board profile not confirmed on this hardware revision", "profile", p.Name, "confirm", p.Confirm)
	}
	return b, nil
}

// Name implements board.Board.
func (b *Board) Name() string { return b.name }

// Identity implements board.Board.
func (b *Board) Identity() board.Identity { return b.id }

// Devices implements board.Board. The board itself observes none of its devices; their
// drivers report their states.
func (b *Board) Devices() []board.DeviceState { return nil }

// Profile implements board.Board.
func (b *Board) Profile() board.Profile { return b.profile }

// Pin implements board.Board.
func (b *Board) Pin(function string) (gpio.PinIO, error) { return b.lines.Pin(function) }

// Close implements board.Board: it releases the GPIO lines.
func (b *Board) Close() error { return b.lines.Close() }

// Discover reads the identity of the machine whose root file system is at root ("/" but
// in tests), with Android properties from getprop.
func Discover(root string) board.Identity { return discover(root, getprop) }

// Models are the two strings detection recognises a terminal model by: Android's
// ro.product.model and the device tree's model, cleaned; either may be empty.
func Models(root string) (android, deviceTree string) {
	return clean(getprop("ro.product.model")), clean(readValue(filepath.Join(root, "proc/device-tree/model")))
}

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
