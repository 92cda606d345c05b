// Package profiles holds the board profiles of the terminal models the agent knows, registers
// a board for each, and detects which one it runs on.
//
// Selection: the configuration names a profile ("wiseasy-wpos3", "ingenico-t3",
// "feitian-f20"), or says "auto" to detect the model from Android's ro.product.model or the
// device tree's model, falling back to linux-generic (devices from the configuration).
//
// None of these profiles has yet been checked against the hardware: each lists under
// Confirm what must be verified on the revision in the field before it is relied on.
package profiles

import (
	"log/slog"
	"slices"

	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/board/generic"
	"github.com/posagent/posagent/drivers/serial"
)

// Auto is the board name that detects the model.
const Auto = "auto"

func init() {
	for _, p := range models {
		if err := p.Validate(); err != nil {
			panic(err) // the table below is wrong: found by any test run
		}
		board.Register(p.Name, func(o board.Options) (board.Board, error) { return generic.New(p.Name, o, clone(p)) })
	}
	board.Register(Auto, func(o board.Options) (board.Board, error) {
		p, ok := detect("/")
		if !ok {
			o.Log().Info("no known terminal model detected; using linux-generic")
			return board.Open(generic.LinuxGeneric, o)
		}
		o.Log().Info("terminal model detected", slog.String("profile", p.Name))
		return generic.New(p.Name, o, p)
	})
}

// hook is the command line of the agent's own installer hook: a script the integrator puts
// on the device where the vendor's mechanism for system components is not known yet.
var hook = []string{"/opt/posagent/hooks/install-component", board.FilePlaceholder}

// androidInstall installs a component packaged as an APK.
var androidInstall = []string{"/system/bin/pm", "install", "-r", board.FilePlaceholder}

// Code pages of the Cyrillic receipts, with the ESC t numbers of Epson's table, which many
// Chinese printer engines copy.
var cyrillicEpson = []board.CodePage{{Charset: "cp866", Number: 17}, {Charset: "windows-1251", Number: 46}}

func port(path string) serial.Config { return serial.Config{Path: path, Baud: 115200} }

var models = []board.Profile{
	{
		Name:   "wiseasy-wpos3",
		Vendor: "Wiseasy", Model: "WPOS-3",
		Match: board.Match{AndroidModel: []string{"WPOS-3", "WPOS3"}},
		Serial: []board.SerialDevice{
			{Name: "printer", Kind: board.KindPrinter, Port: port("/dev/ttyS1")},
			{Name: "pinpad", Kind: board.KindPINPad, Port: port("/dev/ttyS3")},
			{Name: "cardreader", Kind: board.KindCardReader, Port: port("/dev/ttyS4")},
		},
		Printer:   &board.Printer{WidthDots: 384, CodePages: cyrillicEpson, GB18030: true},
		PINPad:    &board.PINPad{Internal: true},
		Installer: androidInstall,
		Confirm: []string{
			"ro.product.model value(s) of the production firmware",
			"serial ports and rates of printer, PIN pad and card reader (assumed; the vendor SDK may own them, and PIN pad and card reader may share one secure-processor port, which the drivers cannot yet share)",
			"no GPIO lines declared: LEDs and buzzer are assumed to be reached through the vendor SDK or /sys/class/leds",
			"printer: 58 mm paper (384 dots), ESC t numbers of cp866/windows-1251, GB18030 mode",
			"installer: pm install covers components shipped as APKs only; secure-processor firmware needs the vendor's update service",
		},
	},
	{
		Name:   "ingenico-t3",
		Vendor: "Ingenico", Model: "T3",
		Match: board.Match{DeviceTree: []string{"Ingenico T3"}, AndroidModel: []string{"Ingenico T3"}},
		Serial: []board.SerialDevice{
			{Name: "printer", Kind: board.KindPrinter, Port: port("/dev/ttyS2")},
			{Name: "pinpad", Kind: board.KindPINPad, Port: port("/dev/ttyACM0")},
			{Name: "cardreader", Kind: board.KindCardReader, Port: port("/dev/ttyS4")},
		},
		GPIO: []board.GPIOLine{
			{Function: board.LineStatusLED, Name: "LED_GREEN"},
			{Function: board.LineErrorLED, Name: "LED_RED"},
			{Function: board.LineBuzzer, Name: "BUZZER"},
			{Function: board.LineDrawer, Name: "DRAWER_KICK"},
			{Function: board.LineDock, Name: "DOCK_DETECT", ActiveLow: true},
			{Function: board.LinePaperLow, Name: "PAPER_NEAR_END"},
		},
		Printer:   &board.Printer{WidthDots: 384, CodePages: cyrillicEpson},
		PINPad:    &board.PINPad{Internal: false},
		Installer: hook,
		Confirm: []string{
			"operating system and the model string it publishes (device tree or ro.product.model)",
			"serial ports and rates; whether the PIN pad is a USB device (then its USB vendor/product id instead of a path)",
			"GPIO line names, chips, numbers and polarity (all assumed)",
			"printer width and ESC t numbers; whether the printer has a GB18030 mode",
			"installer: the vendor's mechanism for system components; until known, the integrator's hook script",
		},
	},
	{
		Name:   "feitian-f20",
		Vendor: "Feitian", Model: "F20",
		Match: board.Match{AndroidModel: []string{"F20"}},
		Serial: []board.SerialDevice{
			{Name: "printer", Kind: board.KindPrinter, Port: port("/dev/ttyS1")},
			{Name: "pinpad", Kind: board.KindPINPad, Port: port("/dev/ttyS2")},
			{Name: "cardreader", Kind: board.KindCardReader, Port: port("/dev/ttyS3")},
		},
		Printer:   &board.Printer{WidthDots: 384, CodePages: cyrillicEpson, GB18030: true},
		PINPad:    &board.PINPad{Internal: true},
		Installer: androidInstall,
		Confirm: []string{
			"ro.product.model value(s): \"F20\" alone may be shared by other makers' devices",
			"serial ports and rates of printer, PIN pad and card reader (assumed; the vendor SDK may own them, and PIN pad and card reader may share one port)",
			"no GPIO lines declared: LEDs and buzzer are assumed to be reached through the vendor SDK or /sys/class/leds",
			"printer: 58 mm paper (384 dots), ESC t numbers, GB18030 mode",
			"installer: pm install covers components shipped as APKs only; system firmware needs the vendor's update service",
		},
	},
}

// All is every model's profile, in a fresh copy the caller may change.
func All() []board.Profile {
	out := make([]board.Profile, len(models))
	for i, p := range models {
		out[i] = clone(p)
	}
	return out
}

// Get is the profile named name.
func Get(name string) (board.Profile, bool) {
	i := slices.IndexFunc(models, func(p board.Profile) bool { return p.Name == name })
	if i < 0 {
		return board.Profile{}, false
	}
	return clone(models[i]), true
}

// Detect is the profile whose model strings match: android is ro.product.model, deviceTree
// the device tree's model (either may be empty).
func Detect(android, deviceTree string) (board.Profile, bool) {
	for _, p := range models {
		if p.Match.Matches(android, deviceTree) {
			return clone(p), true
		}
	}
	return board.Profile{}, false
}

// detect reads the model strings of the machine whose root is root.
func detect(root string) (board.Profile, bool) { return Detect(generic.Models(root)) }

func clone(p board.Profile) board.Profile {
	p.Match.AndroidModel = slices.Clone(p.Match.AndroidModel)
	p.Match.DeviceTree = slices.Clone(p.Match.DeviceTree)
	p.Serial = slices.Clone(p.Serial)
	for i := range p.Serial {
		if u := p.Serial[i].Port.USB; u != nil {
			c := *u
			p.Serial[i].Port.USB = &c
		}
	}
	p.GPIO = slices.Clone(p.GPIO)
	for i := range p.GPIO {
		if n := p.GPIO[i].Number; n != nil {
			c := *n
			p.GPIO[i].Number = &c
		}
	}
	if p.Printer != nil {
		c := *p.Printer
		c.CodePages = slices.Clone(c.CodePages)
		p.Printer = &c
	}
	if p.PINPad != nil {
		c := *p.PINPad
		p.PINPad = &c
	}
	p.Installer = slices.Clone(p.Installer)
	p.Confirm = slices.Clone(p.Confirm)
	return p
}
