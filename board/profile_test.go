package board

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/posagent/posagent/drivers/serial"
)

func validProfile() Profile {
	n := 5
	return Profile{
		Name:  "kiosk",
		Match: Match{AndroidModel: []string{"K1"}, DeviceTree: []string{"Acme Kiosk"}},
		Serial: []SerialDevice{
			{Name: "printer", Kind: KindPrinter, Port: serial.Config{Path: "/dev/ttyS1", Baud: 115200}},
			{Name: "pinpad", Kind: KindPINPad, Port: serial.Config{USB: &serial.USBID{VID: 0x0b00, PID: 1}, Baud: 115200}},
		},
		GPIO: []GPIOLine{
			{Function: LineStatusLED, Name: "LED_G"},
			{Function: LineDock, Chip: "gpiochip1", Number: &n, ActiveLow: true},
		},
		Printer:   &Printer{WidthDots: 576, CodePages: []CodePage{{Charset: "cp866", Number: 17}}},
		Installer: []string{"/usr/bin/install-fw", "--file={file}"},
	}
}

func TestProfileValidate(t *testing.T) {
	if err := validProfile().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := func(f func(*Profile)) Profile { p := validProfile(); f(&p); return p }
	neg := -1
	for name, tc := range map[string]struct {
		p    Profile
		want string
	}{
		"no name":         {bad(func(p *Profile) { p.Name = "" }), "name"},
		"empty match":     {bad(func(p *Profile) { p.Match.DeviceTree = []string{" "} }), "empty model string"},
		"dup device":      {bad(func(p *Profile) { p.Serial[1].Name = "printer" }), "named twice"},
		"shared port":     {bad(func(p *Profile) { p.Serial[1].Port = p.Serial[0].Port }), "same port as printer"},
		"bad kind":        {bad(func(p *Profile) { p.Serial[0].Kind = "scanner" }), `kind "scanner"`},
		"bad port":        {bad(func(p *Profile) { p.Serial[0].Port.Baud = 0 }), "serial printer: baud 0"},
		"bad function":    {bad(func(p *Profile) { p.GPIO[0].Function = "laser" }), `function "laser"`},
		"dup function":    {bad(func(p *Profile) { p.GPIO[1].Function = LineStatusLED }), "given twice"},
		"nameless line":   {bad(func(p *Profile) { p.GPIO[1].Number = nil }), "neither name nor number"},
		"negative number": {bad(func(p *Profile) { p.GPIO[1].Number = &neg }), "number -1"},
		"red without green": {bad(func(p *Profile) {
			p.GPIO[0].Function = LineErrorLED
		}), "led-error without led-status"},
		"odd width":         {bad(func(p *Profile) { p.Printer.WidthDots = 383 }), "width 383"},
		"dup code page":     {bad(func(p *Profile) { p.Printer.CodePages = append(p.Printer.CodePages, CodePage{Charset: "cp866"}) }), "given twice"},
		"code page range":   {bad(func(p *Profile) { p.Printer.CodePages[0].Number = 256 }), "ESC t 256"},
		"no placeholder":    {bad(func(p *Profile) { p.Installer = []string{"/bin/true"} }), "placeholder"},
		"placeholder argv0": {bad(func(p *Profile) { p.Installer = []string{"{file}"} }), "first word"},
	} {
		err := tc.p.Validate()
		if !errors.Is(err, ErrProfile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestProfileLookups(t *testing.T) {
	p := validProfile()
	if d, ok := p.Device("pinpad"); !ok || d.Port.USB.VID != 0x0b00 {
		t.Errorf("Device(pinpad) = %+v %v", d, ok)
	}
	if _, ok := p.Device("scanner"); ok {
		t.Error("Device(scanner) found")
	}
	if l, ok := p.Line(LineDock); !ok || *l.Number != 5 || !l.ActiveLow {
		t.Errorf("Line(dock) = %+v %v", l, ok)
	}
	if _, ok := p.Line(LineBuzzer); ok {
		t.Error("Line(buzzer) found")
	}
	if !LineIsInput(LineDock) || LineIsInput(LineDrawer) {
		t.Error("LineIsInput")
	}
	// The file stays one argument, whatever it holds: no shell sees it.
	cmd, err := p.InstallCommand("/data/ota/fw 1.bin; rm -rf /")
	if err != nil || !slices.Equal(cmd, []string{"/usr/bin/install-fw", "--file=/data/ota/fw 1.bin; rm -rf /"}) {
		t.Errorf("InstallCommand = %q, %v", cmd, err)
	}
	if _, err := (Profile{Name: "x"}).InstallCommand("/f"); err == nil {
		t.Error("no installer: no error")
	}
}

func TestMatch(t *testing.T) {
	m := validProfile().Match
	for _, tc := range []struct {
		android, dt string
		want        bool
	}{
		{"K1", "", true},
		{"k1", "", true},
		{"K10", "", false}, // Android models compare whole
		{"", "ACME kiosk rev B", true},
		{"", "Other board", false},
		{"", "", false},
	} {
		if got := m.Matches(tc.android, tc.dt); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v", tc.android, tc.dt, got)
		}
	}
}
