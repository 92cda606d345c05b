package board

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/posagent/posagent/drivers/serial"
)

// Profile is what a terminal model has and where: which serial port is which device, which
// GPIO line does what, the printer's geometry and code pages, and how system components
// are installed. It is data: the agent reads it to decide which drivers to start where.
//
// Profiles of real models carry Confirm: the facts that were not taken from the hardware
// revision in the field and must be checked on it before the profile is trusted.
type Profile struct {
	// Name is the name the board is selected by in the configuration.
	Name   string `toml:"name"`
	Vendor string `toml:"vendor"`
	Model  string `toml:"model"`

	// Match says how detection recognises the model.
	Match Match `toml:"match"`

	Serial []SerialDevice `toml:"serial"`
	GPIO   []GPIOLine     `toml:"gpio"`

	// Printer is nil when the model has none.
	Printer *Printer `toml:"printer"`
	// PINPad is nil when the model has none.
	PINPad *PINPad `toml:"pinpad"`

	// Installer is the command line that installs an OTA system component (firmware of a
	// secure processor, a vendor service); "{file}" stands for the downloaded package. Empty
	// when the model has no such mechanism.
	Installer []string `toml:"installer"`

	// Confirm lists what must be checked on the real hardware revision.
	Confirm []string `toml:"confirm"`
}

// Match recognises a model from what the platform publishes. Comparisons ignore case.
type Match struct {
	// AndroidModel values of ro.product.model, compared whole.
	AndroidModel []string `toml:"android_model"`
	// DeviceTree substrings of /proc/device-tree/model.
	DeviceTree []string `toml:"device_tree"`
}

// SerialDevice is one device on a serial port.
type SerialDevice struct {
	// Name identifies it in events and statistics, e.g. "printer".
	Name string `toml:"name"`
	// Kind is KindPrinter, KindPINPad or KindCardReader: which driver speaks to it.
	Kind string        `toml:"kind"`
	Port serial.Config `toml:"port"`
}

// GPIO line functions.
const (
	LineStatusLED = "led-status" // the status LED, or its green part
	LineErrorLED  = "led-error"  // a red LED beside it
	LineBuzzer    = "buzzer"
	LineDrawer    = "drawer"    // cash-drawer kick
	LineDock      = "dock"      // input: docked
	LinePaperLow  = "paper-low" // input: paper roll near its end
)

var lineFunctions = []string{LineStatusLED, LineErrorLED, LineBuzzer, LineDrawer, LineDock, LinePaperLow}

// LineIsInput tells the sensor lines from the driven ones.
func LineIsInput(function string) bool { return function == LineDock || function == LinePaperLow }

// GPIOLine says where a function's line is. It is looked up by Name first (the kernel
// publishes names from the device tree), then by Number on Chip, since many boards leave
// lines unnamed.
type GPIOLine struct {
	Function string `toml:"function"`
	// Chip is the gpiochip's name ("gpiochip0") or label; empty means gpiochip0 for a
	// lookup by number.
	Chip string `toml:"chip"`
	Name string `toml:"name"`
	// Number is the line's offset on Chip; nil when only the name is known.
	Number *int `toml:"number"`
	// ActiveLow: the function is on (LED lit, docked …) when the line is low. Boards hand out
	// pins already inverted, so drivers always see High as on.
	ActiveLow bool `toml:"active_low"`
}

// Printer describes a receipt printer's geometry and character sets.
type Printer struct {
	// WidthDots is the printable width: 384 on 58 mm paper, 576 on 80 mm at 203 dpi.
	WidthDots int `toml:"width_dots"`
	// CodePages maps character sets to the printer's ESC t numbers, which differ between
	// makers.
	CodePages []CodePage `toml:"code_pages"`
	// GB18030 says the printer has a Chinese mode (FS &) taking GB18030 double bytes.
	GB18030 bool `toml:"gb18030"`
}

// CodePage is a character set and its ESC t number on a printer.
type CodePage struct {
	Charset string `toml:"charset"` // e.g. "cp866", "windows-1251"
	Number  int    `toml:"number"`
}

// PINPad describes the PIN entry device.
type PINPad struct {
	// Internal: built into the terminal (its secure processor), not a separate device on a cable.
	Internal bool `toml:"internal"`
}

// FilePlaceholder is replaced by the package path in Installer.
const FilePlaceholder = "{file}"

// Validate reports every problem of the profile at once.
func (p Profile) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if p.Name == "" || strings.TrimSpace(p.Name) != p.Name {
		add("name %q: empty or padded", p.Name)
	}
	for _, m := range slices.Concat(p.Match.AndroidModel, p.Match.DeviceTree) {
		if strings.TrimSpace(m) == "" {
			add("match: empty model string")
		}
	}
	seen, ports := map[string]bool{}, map[string]string{}
	for i, d := range p.Serial {
		switch {
		case d.Name == "":
			add("serial[%d]: no name", i)
		case seen[d.Name]:
			add("serial %s: named twice", d.Name)
		}
		seen[d.Name] = true
		switch d.Kind {
		case KindPrinter, KindPINPad, KindCardReader:
		default:
			add("serial %s: kind %q is not %s, %s or %s", d.Name, d.Kind, KindPrinter, KindPINPad, KindCardReader)
		}
		if err := d.Port.Validate(); err != nil {
			add("serial %s: %v", d.Name, strings.TrimPrefix(err.Error(), serial.ErrConfig.Error()+": "))
		}
		// An open port is exclusive: a second device on it would never open.
		key := d.Port.Path
		if d.Port.USB != nil {
			key = "usb " + d.Port.USB.String()
		}
		if other, dup := ports[key]; dup && key != "" {
			add("serial %s: same port as %s", d.Name, other)
		}
		ports[key] = d.Name
	}
	funcs := map[string]bool{}
	for i, l := range p.GPIO {
		switch {
		case !slices.Contains(lineFunctions, l.Function):
			add("gpio[%d]: function %q is not one of %s", i, l.Function, strings.Join(lineFunctions, ", "))
		case funcs[l.Function]:
			add("gpio %s: given twice", l.Function)
		}
		funcs[l.Function] = true
		if l.Name == "" && l.Number == nil {
			add("gpio %s: neither name nor number", l.Function)
		}
		if l.Number != nil && (*l.Number < 0 || *l.Number > 1023) {
			add("gpio %s: number %d not 0–1023", l.Function, *l.Number)
		}
	}
	if funcs[LineErrorLED] && !funcs[LineStatusLED] {
		add("gpio %s without %s", LineErrorLED, LineStatusLED)
	}
	if pr := p.Printer; pr != nil {
		if pr.WidthDots < 8 || pr.WidthDots > 2048 || pr.WidthDots%8 != 0 {
			add("printer: width %d dots is not a multiple of 8 in 8–2048", pr.WidthDots)
		}
		sets := map[string]bool{}
		for _, cp := range pr.CodePages {
			if cp.Charset == "" || sets[cp.Charset] {
				add("printer: code page %q empty or given twice", cp.Charset)
			}
			sets[cp.Charset] = true
			if cp.Number < 0 || cp.Number > 255 {
				add("printer: code page %s: ESC t %d is not a byte", cp.Charset, cp.Number)
			}
		}
	}
	if len(p.Installer) > 0 {
		if p.Installer[0] == "" || strings.Contains(p.Installer[0], FilePlaceholder) {
			add("installer: the first word must be the program")
		}
		if !slices.ContainsFunc(p.Installer, func(a string) bool { return strings.Contains(a, FilePlaceholder) }) {
			add("installer: no %s placeholder for the package", FilePlaceholder)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w %q: %s", ErrProfile, p.Name, strings.Join(errs, "; "))
}

// ErrProfile is wrapped by every error of Profile.Validate.
var ErrProfile = errors.New("board: invalid profile")

// Device is the serial device named name.
func (p Profile) Device(name string) (SerialDevice, bool) {
	i := slices.IndexFunc(p.Serial, func(d SerialDevice) bool { return d.Name == name })
	if i < 0 {
		return SerialDevice{}, false
	}
	return p.Serial[i], true
}

// Line is the GPIO line of function.
func (p Profile) Line(function string) (GPIOLine, bool) {
	i := slices.IndexFunc(p.GPIO, func(l GPIOLine) bool { return l.Function == function })
	if i < 0 {
		return GPIOLine{}, false
	}
	return p.GPIO[i], true
}

// InstallCommand is the installer command line for the package at file, or an error when
// the model has no installer. The file is one argument whatever it contains: no shell sees
// it.
func (p Profile) InstallCommand(file string) ([]string, error) {
	if len(p.Installer) == 0 {
		return nil, fmt.Errorf("board %s: no installer for system components", p.Name)
	}
	cmd := make([]string, len(p.Installer))
	for i, a := range p.Installer {
		cmd[i] = strings.ReplaceAll(a, FilePlaceholder, file)
	}
	return cmd, nil
}

// Matches reports whether the platform's model strings name this profile's model.
// androidModel is ro.product.model, deviceTree the device tree's model; either may be empty.
func (m Match) Matches(androidModel, deviceTree string) bool {
	if androidModel != "" && slices.ContainsFunc(m.AndroidModel, func(s string) bool { return strings.EqualFold(s, androidModel) }) {
		return true
	}
	dt := strings.ToLower(deviceTree)
	return dt != "" && slices.ContainsFunc(m.DeviceTree, func(s string) bool { return strings.Contains(dt, strings.ToLower(s)) })
}
