package mosquitto

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// checkLine verifies a password-file line the way Mosquitto does: split the fields, decode the
// salt and recompute PBKDF2-SHA512 of the password.
func checkLine(t *testing.T, line, user, password string) {
	t.Helper()
	u, rest, ok := strings.Cut(line, ":")
	parts := strings.Split(rest, "$")
	// "$7$101$salt$hash" splits into "", "7", "101", salt, hash.
	if !ok || u != user || len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		t.Fatalf("line %q is not %s's line in mosquitto's PBKDF2 format", line, user)
	}
	iter, err := strconv.Atoi(parts[2])
	if err != nil || iter != pwIterations {
		t.Fatalf("iterations %q", parts[2])
	}
	salt, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil || len(salt) != pwSaltLen {
		t.Fatalf("salt %q: %v", parts[3], err)
	}
	hash, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil {
		t.Fatal(err)
	}
	want, err := pbkdf2.Key(sha512.New, password, salt, iter, sha512.Size)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hash, want) {
		t.Fatalf("%s: hash does not match the password", user)
	}
}

func TestPasswordLine(t *testing.T) {
	line, err := PasswordLine("dev1", "secret")
	if err != nil {
		t.Fatal(err)
	}
	checkLine(t, line, "dev1", "secret")
	again, err := PasswordLine("dev1", "secret")
	if err != nil {
		t.Fatal(err)
	}
	if again == line {
		t.Fatal("two lines for the same password share a salt")
	}
	for _, bad := range []string{"", "a:b", "a\nb", "a\rb"} {
		if _, err := PasswordLine(bad, "x"); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("user %q: err %v, want ErrInvalidOptions", bad, err)
		}
	}
}

// TestWritePasswordsInOrder covers chunk boundaries (chunks of 128) and a partial last chunk.
func TestWritePasswordsInOrder(t *testing.T) {
	for _, n := range []int{1, 128, 300} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var buf bytes.Buffer
			at := func(i int) account { return account{fmt.Sprintf("u%04d", i), fmt.Sprintf("p%d", i*7)} }
			if err := writePasswords(&buf, n, at); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(&buf)
			i := 0
			for ; sc.Scan(); i++ {
				a := at(i)
				checkLine(t, sc.Text(), a.user, a.password)
			}
			if i != n {
				t.Fatalf("%d lines, want %d", i, n)
			}
		})
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n += len(p); f.n > 1000 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWritePasswordsReportsWriteError(t *testing.T) {
	at := func(i int) account { return account{fmt.Sprintf("u%d", i), "p"} }
	if err := writePasswords(&failWriter{}, 600, at); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err %v, want the writer's error", err)
	}
}

func BenchmarkPasswordLine(b *testing.B) {
	for b.Loop() {
		if _, err := PasswordLine("FS-00001", "0123456789abcdef0123456789abcdef"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPasswordFile20000 is one fleet-sized password file per op, on every core.
func BenchmarkPasswordFile20000(b *testing.B) {
	path := filepath.Join(b.TempDir(), "passwd")
	at := func(i int) account { return account{fmt.Sprintf("FS-%05d", i), "0123456789abcdef0123456789abcdef"} }
	for b.Loop() {
		if err := writePasswordFile(path, 20000, at); err != nil {
			b.Fatal(err)
		}
	}
}
