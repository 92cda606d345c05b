package testbroker

import (
	"strings"
	"testing"

	"github.com/posagent/posagent/internal/mosquitto"
)

func TestSelectKind(t *testing.T) {
	if _, err := selectKind("bogus"); err == nil || !strings.Contains(err.Error(), "unknown broker kind") {
		t.Fatalf("bogus kind: %v", err)
	}
	t.Setenv(EnvKind, "")
	k, err := selectKind("")
	if err != nil {
		t.Fatal(err)
	}
	_, perr := mosquitto.LookPath()
	if want := map[bool]string{true: KindMosquitto, false: KindMochi}[perr == nil]; k != want {
		t.Fatalf("default kind %s, want %s", k, want)
	}
	t.Setenv(EnvKind, KindMochi)
	if k, _ := selectKind(""); k != KindMochi {
		t.Fatalf("env mochi gave %s", k)
	}
	if k, _ := selectKind(KindMochi); k != KindMochi {
		t.Fatalf("forced mochi gave %s", k)
	}
}

func TestMosquittoPasswordLine(t *testing.T) {
	line, err := mosquitto.PasswordLine("dev1", "secret")
	if err != nil {
		t.Fatal(err)
	}
	user, rest, ok := strings.Cut(line, ":")
	parts := strings.Split(rest, "$")
	// "$7$101$salt$hash" splits into "", "7", "101", salt, hash.
	if !ok || user != "dev1" || len(parts) != 5 || parts[1] != "7" || parts[2] != "101" || len(parts[3]) != 16 || len(parts[4]) != 88 {
		t.Fatalf("line %q is not in mosquitto's PBKDF2 format", line)
	}
}
