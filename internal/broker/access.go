package broker

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/posagent/posagent/agent/tmsproto"
)

// tmsRoot is the topic tree TMS users may use; a terminal gets tmsRoot + its deviceId.
var tmsRoot = strings.Split(strings.TrimSuffix(tmsproto.TopicRoot, "/"), "/")

// accessControl authenticates connections and authorises topics. It is immutable after
// construction, so mochi may call it from every client goroutine.
type accessControl struct {
	mqtt.HookBase
	// passwords holds SHA-256 digests so that comparisons take the same time whatever the
	// length of the guess.
	passwords map[string][sha256.Size]byte
	tms       map[string]bool
	certAuth  bool
}

func newAccessControl(opts Options) (*accessControl, error) {
	a := &accessControl{
		passwords: make(map[string][sha256.Size]byte, len(opts.Users)),
		tms:       make(map[string]bool, len(opts.TMSUsers)),
		certAuth:  opts.CertAuth,
	}
	for _, u := range opts.TMSUsers {
		if u == "" || strings.ContainsAny(u, "+#/") {
			return nil, &OptionsError{Field: "TMSUsers", Reason: fmt.Sprintf("username %q is empty or contains + # /", u)}
		}
		a.tms[u] = true
	}
	for u, p := range opts.Users {
		if !a.tms[u] {
			if err := tmsproto.ValidDeviceID(u); err != nil {
				return nil, &OptionsError{Field: "Users", Reason: err.Error()}
			}
		}
		if p == "" {
			return nil, &OptionsError{Field: "Users", Reason: fmt.Sprintf("user %q has an empty password", u)}
		}
		a.passwords[u] = sha256.Sum256([]byte(p))
	}
	for u := range a.tms {
		if _, ok := a.passwords[u]; !ok && !a.certAuth {
			return nil, &OptionsError{Field: "TMSUsers", Reason: fmt.Sprintf("user %q has no password in Users", u)}
		}
	}
	return a, nil
}

func (a *accessControl) ID() string { return "posagent-access" }

func (a *accessControl) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate admits a client whose credentials are right, whose client id is its
// username when it is a terminal, and whose Will stays inside its own topics (mochi publishes
// Wills without an ACL check, so an unchecked Will could forge another terminal's messages).
func (a *accessControl) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	reason := a.refusal(cl, pk, user)
	if reason != "" {
		a.Log.Warn("connection refused", "user", user, "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
		return false
	}
	return true
}

// refusal returns why the connection must be refused, or "" to admit it.
func (a *accessControl) refusal(cl *mqtt.Client, pk packets.Packet, user string) string {
	if user == "" {
		return "no username"
	}
	certName, hasCert := verifiedCertName(cl)
	switch {
	case hasCert && certName != user:
		return "username differs from the client certificate's CommonName"
	case hasCert && a.certAuth:
		// The CA vouches for the name; no password needed.
	default:
		want, known := a.passwords[user]
		got := sha256.Sum256(pk.Connect.Password)
		if subtle.ConstantTimeCompare(want[:], got[:]) != 1 || !known {
			return "bad username or password"
		}
	}
	if !a.tms[user] {
		if err := tmsproto.ValidDeviceID(user); err != nil {
			return "username is not a valid deviceId"
		}
		if cl.ID != user {
			return "client id differs from username"
		}
	}
	if pk.Connect.WillFlag && !a.allowed(user, pk.Connect.WillTopic) {
		return "will topic outside the user's topics"
	}
	return ""
}

// OnACLCheck applies the same rule to publishing and subscribing: every topic a filter could
// match must lie inside the user's tree.
func (a *accessControl) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if a.allowed(user, topic) {
		return true
	}
	a.Log.Info("topic denied", "user", user, "client", cl.ID, "topic", topic, "write", write)
	return false
}

func (a *accessControl) allowed(user, topic string) bool {
	if user == "" {
		return false
	}
	if a.tms[user] {
		return within(topic, tmsRoot...)
	}
	if tmsproto.ValidDeviceID(user) != nil {
		return false
	}
	return within(topic, append(tmsRoot[:len(tmsRoot):len(tmsRoot)], user)...)
}

// within reports whether every topic that filter matches lies under the topic tree named by
// prefix (the prefix itself included, as `prefix/#` matches it). The prefix levels are
// literals, so a wildcard at one of those levels could escape and is refused. Topics starting
// with '$' ($SYS, $share) are never inside.
func within(filter string, prefix ...string) bool {
	if filter == "" || filter[0] == '$' || len(prefix) == 0 {
		return false
	}
	rest := filter
	for i, p := range prefix {
		level, tail, more := strings.Cut(rest, "/")
		if level != p {
			return false
		}
		if !more {
			return i == len(prefix)-1
		}
		rest = tail
	}
	return true
}

// verifiedCertName returns the CommonName of the client's CA-verified certificate, if any.
func verifiedCertName(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	return st.VerifiedChains[0][0].Subject.CommonName, true
}
