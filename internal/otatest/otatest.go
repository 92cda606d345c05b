// Package otatest is test support for updates: agent binaries of chosen versions, signed
// releases, and the TMS side of MQTT block pull (a blob server on a real broker), so that
// tests send the same bytes a TMS would.
package otatest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/manifest"
)

var (
	binMu    sync.Mutex
	binCache = map[string]string{}
)

// AgentBinary builds cmd/posagent stamped with version (once per test binary and version)
// and returns its path. The files live in a directory removed at process exit by the OS
// temp cleaner only; they are small next to the module cache.
func AgentBinary(tb testing.TB, version string) string {
	tb.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binCache[version]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "posagent-ota-"+version)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "posagent")
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags=-s -w -X github.com/posagent/posagent/agent/buildinfo.Version="+version,
		"-o", path, "github.com/posagent/posagent/cmd/posagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", version, err, out)
	}
	binCache[version] = path
	return path
}

// Arch is the manifest arch of binaries built here.
func Arch() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Key is a release key.
type Key struct {
	ID   string
	Priv ed25519.PrivateKey
}

// NewKey makes a release key.
func NewKey(tb testing.TB, id string) Key {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return Key{ID: id, Priv: priv}
}

// Public is the key's public half.
func (k Key) Public() ed25519.PublicKey { return k.Priv.Public().(ed25519.PublicKey) }

// Sign signs r (filling Issued/Expires when zero) and returns the manifest bytes.
func (k Key) Sign(tb testing.TB, r manifest.Release) []byte {
	tb.Helper()
	if r.V == 0 {
		r.V = 1
	}
	if r.Issued == 0 {
		r.Issued = time.Now().Add(-time.Minute).Unix()
	}
	if r.Expires == 0 {
		r.Expires = time.Now().Add(30 * 24 * time.Hour).Unix()
	}
	raw, err := manifest.Sign(k.Priv, k.ID, r)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// FileComponent describes path as a component (size and hash computed by streaming).
func FileComponent(tb testing.TB, c manifest.Component, path string) manifest.Component {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		tb.Fatal(err)
	}
	c.Size, c.SHA256 = n, h.Sum(nil)
	return c
}

// Server is the TMS side of MQTT block pull on a real broker: it answers every device's
// up/blob requests from the files it was given, by blob.ID(sha256).
type Server struct {
	client mqtt.Client
	mu     sync.Mutex
	files  map[string]string
	open   map[string]*os.File
	// Served counts data bytes sent.
	Served atomic.Int64
}

// Serve connects to the broker as the TMS and serves until the test ends.
func Serve(tb testing.TB, brokerURL, user, password string) *Server {
	tb.Helper()
	s := &Server{files: map[string]string{}, open: map[string]*os.File{}}
	srv := &blob.Server{
		Publish: func(ctx context.Context, topic string, payload []byte) error {
			tok := s.client.Publish(topic, 1, false, payload)
			if !tok.WaitTimeout(10 * time.Second) {
				return fmt.Errorf("publish %s: timeout", topic)
			}
			if err := tok.Error(); err != nil {
				return err
			}
			if b, err := blob.DecodeBlock(payload); err == nil {
				s.Served.Add(int64(len(b.Data)))
			}
			return nil
		},
		Open: func(tid string) (io.ReaderAt, int64, bool) {
			s.mu.Lock()
			defer s.mu.Unlock()
			path, ok := s.files[tid]
			if !ok {
				return nil, 0, false
			}
			f := s.open[path]
			if f == nil {
				var err error
				if f, err = os.Open(path); err != nil {
					return nil, 0, false
				}
				s.open[path] = f
			}
			st, err := f.Stat()
			if err != nil {
				return nil, 0, false
			}
			return f, st.Size(), true
		},
	}
	requests := make(chan mqtt.Message, 1024)
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("tms-blobs-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(password).SetCleanSession(true).SetAutoReconnect(true).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe("tms/v1/+/up/blob/+", 1, func(_ mqtt.Client, m mqtt.Message) {
				select {
				case requests <- m:
				default:
				}
			})
		})
	s.client = mqtt.NewClient(opts)
	if tok := s.client.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		tb.Fatalf("blob server connect: %v", tok.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-requests:
				_ = srv.Handle(ctx, m.Topic(), m.Payload())
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		s.client.Disconnect(100)
		s.mu.Lock()
		for _, f := range s.open {
			f.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// Add serves path under the transfer id of its SHA-256 and returns the id.
func (s *Server) Add(tb testing.TB, path string) string {
	c := FileComponent(tb, manifest.Component{}, path)
	id := blob.ID(c.SHA256)
	s.AddAs(id, path)
	return id
}

// AddAs serves path under id.
func (s *Server) AddAs(id, path string) {
	s.mu.Lock()
	s.files[id] = path
	s.mu.Unlock()
}
