package mosquitto

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/posagent/posagent/agent/tmsproto"
)

// File names inside Options.Dir.
const (
	passwdFile = "passwd"
	aclFile    = "acl"
)

// Mosquitto 2.0's mosquitto_passwd format: "$7$" = PBKDF2-HMAC-SHA512 with these parameters.
const (
	pwIterations = 101
	pwSaltLen    = 12
)

// PasswordLine returns a password-file line ("user:$7$101$salt$hash", without newline) in
// the format mosquitto_passwd writes for Mosquitto 2.0, with a fresh random salt. Generating
// it in-process spares one mosquitto_passwd run per account.
func PasswordLine(user, password string) (string, error) {
	if err := validUser(user); err != nil {
		return "", err
	}
	return passwordLine(user, password)
}

func passwordLine(user, password string) (string, error) {
	salt := make([]byte, pwSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("mosquitto: salt: %w", err)
	}
	hash, err := pbkdf2.Key(sha512.New, password, salt, pwIterations, sha512.Size)
	if err != nil {
		return "", fmt.Errorf("mosquitto: pbkdf2: %w", err)
	}
	enc := base64.StdEncoding
	return user + ":$7$101$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(hash), nil
}

// validUser rejects names that would break the password file's "user:hash" lines.
func validUser(user string) error {
	if user == "" || strings.ContainsAny(user, ":\n\r\x00") {
		return fmt.Errorf("%w: username %q", ErrInvalidOptions, user)
	}
	return nil
}

// account is one password-file entry.
type account struct{ user, password string }

// writeAccounts writes the password file and the ACL. They do not depend on the port, so
// they are written once per Server, not on every Start.
func (s *Server) writeAccounts() error {
	n := 1 + len(s.opts.Devices)
	at := func(i int) account {
		if i == 0 {
			return account{s.opts.TMSUser, s.opts.TMSPassword}
		}
		id := s.opts.Devices[i-1]
		return account{id, s.opts.DevicePassword(id)}
	}
	if err := writePasswordFile(filepath.Join(s.opts.Dir, passwdFile), n, at); err != nil {
		return err
	}
	// The production ACL: the TMS sees every terminal, a terminal only itself (%u is the
	// username, which is the device id).
	acl := "user " + s.opts.TMSUser + "\ntopic readwrite " + tmsproto.TopicRoot + "#\n\n" +
		"pattern readwrite " + tmsproto.TopicRoot + "%u/#\n"
	return writeFile(filepath.Join(s.opts.Dir, aclFile), []byte(acl))
}

// writePasswordFile writes n accounts' lines to path. PBKDF2 dominates, so lines are hashed
// in chunks on every core and written in order as chunks complete.
func writePasswordFile(path string, n int, at func(i int) account) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	err = writePasswords(f, n, at)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("mosquitto: %w", cerr)
	}
	return err
}

// writePasswords writes n accounts' lines to w in index order.
func writePasswords(w io.Writer, n int, at func(i int) account) error {
	const chunk = 128
	chunks := (n + chunk - 1) / chunk
	type result struct {
		text []byte
		err  error
	}
	results := make([]chan result, chunks)
	for i := range results {
		results[i] = make(chan result, 1)
	}
	var next atomic.Int64 // next chunk to hash
	var stop atomic.Bool  // the writer failed; stop hashing
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(chunks, 1)) {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks || stop.Load() {
					return
				}
				var b strings.Builder
				var err error
				for i := c * chunk; i < min(n, (c+1)*chunk) && err == nil; i++ {
					a := at(i)
					var line string
					if line, err = passwordLine(a.user, a.password); err == nil {
						b.WriteString(line)
						b.WriteByte('\n')
					}
				}
				results[c] <- result{[]byte(b.String()), err}
			}
		})
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	for c := 0; c < chunks && err == nil; c++ {
		r := <-results[c]
		if err = r.err; err == nil {
			if _, werr := bw.Write(r.text); werr != nil {
				err = fmt.Errorf("mosquitto: write password file: %w", werr)
			}
		}
	}
	if err != nil {
		stop.Store(true)
	} else if ferr := bw.Flush(); ferr != nil {
		err = fmt.Errorf("mosquitto: write password file: %w", ferr)
	}
	wg.Wait()
	return err
}

// writeConfig writes mosquitto.conf for the current port.
func (s *Server) writeConfig() error {
	o := s.opts
	var c strings.Builder
	c.WriteString("# written by internal/mosquitto\n")
	c.WriteString("per_listener_settings false\n")
	fmt.Fprintf(&c, "listener %d %s\n", s.port, o.Host)
	// Per listener. Mosquitto 2.0.11 has no listen-backlog setting: it calls listen() with a
	// fixed backlog of 100, whatever net.core.somaxconn allows.
	maxConn := -1
	if o.MaxConnections > 0 {
		maxConn = o.MaxConnections
	}
	fmt.Fprintf(&c, "max_connections %d\n", maxConn)
	c.WriteString("allow_anonymous false\n")
	fmt.Fprintf(&c, "password_file %s\n", filepath.Join(o.Dir, passwdFile))
	fmt.Fprintf(&c, "acl_file %s\n", filepath.Join(o.Dir, aclFile))
	if o.Persistence {
		c.WriteString("persistence true\n")
		fmt.Fprintf(&c, "persistence_location %s/\n", o.Dir)
		// Save on exit only: a graceful Stop saves, a Kill loses what changed since.
		c.WriteString("autosave_interval 0\n")
	} else {
		c.WriteString("persistence false\n")
	}
	// Unlimited, so that what is measured is the agent and not broker limits.
	c.WriteString("max_queued_messages 0\n")
	c.WriteString("max_queued_bytes 0\n")
	c.WriteString("max_inflight_messages 0\n")
	c.WriteString("set_tcp_nodelay true\n")
	c.WriteString("log_dest stderr\n")
	types := []string{"error", "warning"}
	if o.Log != nil {
		types = append(types, "notice", "information", "subscribe", "unsubscribe")
	}
	for _, t := range types {
		fmt.Fprintf(&c, "log_type %s\n", t)
	}
	c.WriteString("log_timestamp_format %Y-%m-%dT%H:%M:%S\n")
	if os.Geteuid() == 0 {
		// Started as root, mosquitto drops to user "mosquitto", which cannot read a private
		// directory of ours.
		c.WriteString("user root\n")
	}
	if o.ExtraConfig != "" {
		c.WriteString(o.ExtraConfig)
		if !strings.HasSuffix(o.ExtraConfig, "\n") {
			c.WriteByte('\n')
		}
	}
	return writeFile(s.conf, []byte(c.String()))
}

func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	return nil
}
