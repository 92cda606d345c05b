package testbroker

import (
	"crypto/tls"
	"log/slog"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Open is an in-process broker that admits anybody to anything, for tests of TMS-side code
// that are about MQTT behaviour, not about access control (use Start for that).
type Open struct {
	Server *mochi.Server
	// URL is the plain listener; TLSURL the TLS one, when StartOpen was given a tls.Config.
	URL, TLSURL string
}

// StartOpen runs an Open broker on free loopback ports until the test ends.
func StartOpen(t testing.TB, tlsConf *tls.Config) *Open {
	t.Helper()
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(&allowAll{srv: s}, nil); err != nil {
		t.Fatal(err)
	}
	o := &Open{Server: s}
	l := listeners.NewTCP(listeners.Config{ID: "plain", Address: "127.0.0.1:0"})
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	o.URL = "tcp://" + l.Address()
	if tlsConf != nil {
		lt := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: tlsConf})
		if err := s.AddListener(lt); err != nil {
			t.Fatal(err)
		}
		o.TLSURL = "ssl://" + lt.Address()
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// mochi's Close can deadlock against a client that is still being removed (a
		// recursive read lock with a writer waiting), so let the clients go first.
		for i := 0; i < 5000 && s.Clients.Len() > 0; i++ {
			time.Sleep(time.Millisecond)
		}
		_ = s.Close()
	})
	return o
}

// allowAll admits every client to every topic. mochi's own hooks/auth would do, but it drags
// in a YAML module that go.sum does not carry.
//
// It also works around a mochi race: when a clean-session client reconnects under the same id
// before the broker has finished cleaning up its dropped connection, that cleanup deletes the
// new client from the registry and the client silently receives nothing. Holding the new
// connection until the old one is gone makes reconnect tests deterministic.
type allowAll struct {
	mochi.HookBase
	srv *mochi.Server
}

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *allowAll) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	for range 5000 {
		old, ok := h.srv.Clients.Get(cl.ID)
		if !ok || !old.Closed() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }
