package serial

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := Config{Path: "/dev/ttyS1", Baud: 115200}
	if err := good.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	full := Config{USB: &USBID{VID: 0x1a86, PID: 0x7523, Serial: "A1"}, Baud: 9600, DataBits: 7,
		Parity: ParityEven, StopBits: 2, Flow: FlowRTSCTS, ReadTimeout: time.Second, Modem: &ModemBits{DTR: true}}
	if err := full.Validate(); err != nil {
		t.Fatalf("full config: %v", err)
	}
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no port":       {Config{Baud: 9600}, "no port"},
		"both":          {Config{Path: "/dev/x", USB: &USBID{VID: 1}, Baud: 9600}, "both path and usb"},
		"relative path": {Config{Path: "ttyS1", Baud: 9600}, "must be absolute"},
		"unclean path":  {Config{Path: "/dev/../dev/ttyS1", Baud: 9600}, "must be absolute"},
		"vid 0":         {Config{USB: &USBID{PID: 1}, Baud: 9600}, "vid 0000"},
		"usb serial":    {Config{USB: &USBID{VID: 1, Serial: "a\nb"}, Baud: 9600}, "usb serial"},
		"no baud":       {Config{Path: "/dev/x"}, "baud 0"},
		"huge baud":     {Config{Path: "/dev/x", Baud: 10_000_000}, "baud 10000000"},
		"data bits":     {Config{Path: "/dev/x", Baud: 9600, DataBits: 9}, "data bits 9"},
		"parity":        {Config{Path: "/dev/x", Baud: 9600, Parity: "mark"}, `parity "mark"`},
		"stop bits":     {Config{Path: "/dev/x", Baud: 9600, StopBits: 3}, "stop bits 3"},
		"flow":          {Config{Path: "/dev/x", Baud: 9600, Flow: "dtrdsr"}, `flow "dtrdsr"`},
		"xonxoff 7 bit": {Config{Path: "/dev/x", Baud: 9600, DataBits: 7, Flow: FlowXONXOFF}, "needs 8 data bits"},
		"read timeout":  {Config{Path: "/dev/x", Baud: 9600, ReadTimeout: -1}, "read timeout"},
		"write timeout": {Config{Path: "/dev/x", Baud: 9600, WriteTimeout: -1}, "write timeout"},
	} {
		err := tc.cfg.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig mentioning %q", name, err, tc.want)
		}
	}
	// Every problem at once, so a configuration is fixed in one round.
	err := Config{Baud: 1, Parity: "x"}.Validate()
	if n := strings.Count(err.Error(), ";"); n != 2 {
		t.Errorf("want three problems in one error: %v", err)
	}
}

func TestParseUSBID(t *testing.T) {
	id, err := ParseUSBID("1A86:7523")
	if err != nil || id != (USBID{VID: 0x1a86, PID: 0x7523}) {
		t.Errorf("ParseUSBID = %+v, %v", id, err)
	}
	id, err = ParseUSBID("0403:6001:FT:12")
	if err != nil || id != (USBID{VID: 0x0403, PID: 0x6001, Serial: "FT:12"}) || id.String() != `0403:6001 serial "FT:12"` {
		t.Errorf("ParseUSBID with serial = %+v (%s), %v", id, id, err)
	}
	for _, bad := range []string{"", "1a86", "1a86:75230", "xyz1:0001", "0000:0001", "1:2"} {
		if _, err := ParseUSBID(bad); err == nil {
			t.Errorf("ParseUSBID(%q) accepted", bad)
		}
	}
}

func TestDefaultBackoffDoublesToCap(t *testing.T) {
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		if got := defaultBackoff(i); got != w*time.Millisecond {
			t.Errorf("defaultBackoff(%d) = %v", i, got)
		}
	}
	if defaultBackoff(1000) != 5*time.Second {
		t.Error("no cap for large attempts")
	}
}
