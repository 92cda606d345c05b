package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDiagSection(t *testing.T) {
	c, err := Parse("empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Diag.Listen != "127.0.0.1:8091" || c.Diag.HistoryInterval.D() != 10*time.Second || c.DiagOff() || c.DiagTLS() {
		t.Errorf("defaults: %+v off=%t tls=%t", c.Diag, c.DiagOff(), c.DiagTLS())
	}

	for _, tc := range []struct {
		toml     string
		off, tls bool
	}{
		{`listen = "off"`, true, true},
		{`listen = "127.0.0.1:0"`, false, false},
		{`listen = "[::1]:8091"`, false, false},
		{`listen = "localhost:8091"`, false, false},
		{`listen = "0.0.0.0:8091"`, false, true},
		{`listen = "192.168.7.1:8091"`, false, true},
		{"listen = \"127.0.0.1:8091\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"", false, true},
	} {
		c, err := Parse("diag", []byte("[diag]\n"+tc.toml+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.toml, err)
			continue
		}
		if c.DiagOff() != tc.off || (!tc.off && c.DiagTLS() != tc.tls) {
			t.Errorf("%s: off=%t tls=%t, want %t %t", tc.toml, c.DiagOff(), c.DiagTLS(), tc.off, tc.tls)
		}
	}

	for _, bad := range []struct{ toml, key string }{
		{`listen = "8091"`, "diag.listen"},
		{`listen = ":8091"`, "diag.listen"},
		{`cert_file = "/c.pem"`, "diag.cert_file"},
		{`history_interval = "100ms"`, "diag.history_interval"},
		{`history_interval = "2h"`, "diag.history_interval"},
	} {
		_, err := Parse("diag", []byte("[diag]\n"+bad.toml+"\n"))
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%s: %v, want a problem with %s", bad.toml, err, bad.key)
		}
	}
}

func TestValidBroker(t *testing.T) {
	for _, ok := range []string{"tcp://tms.example.com:1883", "ssl://10.0.0.1:8883", "mqtts://[::1]:8883"} {
		if err := ValidBroker(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "tms.example.com:1883", "http://h:80", "tcp://h", "tcp://:1883", "tcp://u:secret@h:1883", "%zz"} {
		err := ValidBroker(bad)
		if !errors.Is(err, ErrBrokerURL) {
			t.Errorf("%q: %v, want ErrBrokerURL", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error shows the password: %v", bad, err)
		}
	}
}
