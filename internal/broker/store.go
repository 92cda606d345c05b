package broker

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	bbolt "go.etcd.io/bbolt"
)

// sessionStore keeps what a broker must not forget across a restart — persistent sessions,
// their subscriptions, their queued and in-flight QoS 1/2 messages, and retained messages —
// in a bbolt file, one fsync per change.
//
// It replaces mochi's own bolt hook, which stores in-flight messages without their packet id
// (so after a restart they collapse into one entry and the resend fails) and persists refused
// subscriptions. Clean sessions never touch the disk: they die with the connection anyway.
// On a graceful stop the queues are written once more exactly as they are in memory (see
// OnStopped), so a restart restores what the broker had, whatever raced with a takeover.
type sessionStore struct {
	mqtt.HookBase
	path string
	// srv is read when the broker stops, to write the final queues.
	srv *mqtt.Server
	// loaded is set once mochi has read the stored queues: before that the queues in memory
	// are not the whole state, and must not replace the stored ones (a failed Start).
	loaded atomic.Bool

	// mu makes Stop wait for operations in progress; mochi's event loop may still call a
	// hook while the server is closing.
	mu sync.RWMutex
	db *bbolt.DB
}

var (
	bucketClients  = []byte("clients")
	bucketSubs     = []byte("subscriptions")
	bucketInflight = []byte("inflight")
	bucketRetained = []byte("retained")
	allBuckets     = [][]byte{bucketClients, bucketSubs, bucketInflight, bucketRetained}
)

// errStoreClosed is returned by Stored* calls made after Stop.
var errStoreClosed = errors.New("session store closed")

func newSessionStore(path string, srv *mqtt.Server) *sessionStore {
	return &sessionStore{path: path, srv: srv}
}

func (s *sessionStore) ID() string { return "posagent-session-store" }

func (s *sessionStore) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnWillSent, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnStopped,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages:
		return true
	}
	return false
}

func (s *sessionStore) Init(any) error {
	// Fail, not hang, when another broker holds the file.
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", s.path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("init %s: %w", s.path, err)
	}
	s.db = db
	return nil
}

func (s *sessionStore) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// update runs fn in a write transaction unless the store is closed. Failures are logged: a
// hook cannot refuse the broker's state change.
func (s *sessionStore) update(what string, fn func(tx *bbolt.Tx) error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return
	}
	if err := s.db.Update(fn); err != nil {
		s.Log.Error("session store write failed", "op", what, "error", err)
	}
}

// persistent reports whether the client's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func put(tx *bbolt.Tx, bucket, key []byte, v encoding.BinaryMarshaler) error {
	data, err := v.MarshalBinary()
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, data)
}

// clientPrefix starts every subscription and in-flight key of a client. Client ids cannot
// contain NUL (MQTT strings forbid it), so one client's prefix never covers another's keys.
func clientPrefix(clientID string) []byte { return append([]byte(clientID), 0) }

func subKey(clientID, filter string) []byte { return append(clientPrefix(clientID), filter...) }

func inflightKey(clientID string, id uint16) []byte {
	return binary.BigEndian.AppendUint16(clientPrefix(clientID), id)
}

func deletePrefix(tx *bbolt.Tx, bucket, prefix []byte) error {
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (s *sessionStore) forget(tx *bbolt.Tx, clientID string) error {
	if err := tx.Bucket(bucketClients).Delete([]byte(clientID)); err != nil {
		return err
	}
	if err := deletePrefix(tx, bucketSubs, clientPrefix(clientID)); err != nil {
		return err
	}
	return deletePrefix(tx, bucketInflight, clientPrefix(clientID))
}

func (s *sessionStore) saveClient(cl *mqtt.Client) {
	if !persistent(cl) {
		return
	}
	props := cl.Properties.Props.Copy(false)
	rec := &storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			AuthenticationData:        props.AuthenticationData,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
	s.update("save client", func(tx *bbolt.Tx) error { return put(tx, bucketClients, []byte(cl.ID), rec) })
}

func (s *sessionStore) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { s.saveClient(cl) }

func (s *sessionStore) OnWillSent(cl *mqtt.Client, _ packets.Packet) { s.saveClient(cl) }

func (s *sessionStore) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	// A taken-over session lives on in the new connection.
	if !expire || cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	// Only a client that once had a persistent session has anything stored; checking first
	// spares every clean disconnect an fsync.
	if s.has(bucketClients, []byte(cl.ID)) {
		s.update("forget client", func(tx *bbolt.Tx) error { return s.forget(tx, cl.ID) })
	}
}

// has reports whether bucket holds key.
func (s *sessionStore) has(bucket, key []byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	found := false
	if s.db != nil {
		_ = s.db.View(func(tx *bbolt.Tx) error {
			found = tx.Bucket(bucket).Get(key) != nil
			return nil
		})
	}
	return found
}

func (s *sessionStore) OnClientExpired(cl *mqtt.Client) {
	s.update("expire client", func(tx *bbolt.Tx) error { return s.forget(tx, cl.ID) })
}

func (s *sessionStore) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !persistent(cl) {
		return
	}
	s.update("save subscriptions", func(tx *bbolt.Tx) error {
		for i, f := range pk.Filters {
			if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
				continue // refused: nothing to remember
			}
			rec := &storage.Subscription{
				ID:                string(subKey(cl.ID, f.Filter)),
				T:                 storage.SubscriptionKey,
				Client:            cl.ID,
				Filter:            f.Filter,
				Qos:               codes[i],
				Identifier:        f.Identifier,
				NoLocal:           f.NoLocal,
				RetainHandling:    f.RetainHandling,
				RetainAsPublished: f.RetainAsPublished,
			}
			if err := put(tx, bucketSubs, subKey(cl.ID, f.Filter), rec); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *sessionStore) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if !persistent(cl) {
		return
	}
	s.update("delete subscriptions", func(tx *bbolt.Tx) error {
		for _, f := range pk.Filters {
			if err := tx.Bucket(bucketSubs).Delete(subKey(cl.ID, f.Filter)); err != nil {
				return err
			}
		}
		return nil
	})
}

func message(pk packets.Packet, t, id, client string) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		ID:          id,
		T:           t,
		Client:      client,
		Origin:      pk.Origin,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Created:     pk.Created,
		PacketID:    pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			TopicAlias:             props.TopicAlias,
			User:                   props.User,
		},
	}
}

func (s *sessionStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	switch {
	case pk.FixedHeader.Type == packets.Puback:
		// An inbound QoS 1 PUBLISH is acknowledged and forgotten within one call; storing
		// its PUBACK would cost two fsyncs for nothing.
		return
	case pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Dup:
		// mochi re-sending a queue: each message was stored when it was queued.
		return
	case pk.FixedHeader.Type == packets.Publish && cl.IsTakenOver():
		// Queued on a session object a new connection is replacing: the handover hook
		// moves it to the new connection and stores it there, under its new packet id.
		return
	}
	s.saveInflight(cl, pk)
}

// saveInflight stores pk in cl's queue under its packet id.
func (s *sessionStore) saveInflight(cl *mqtt.Client, pk packets.Packet) {
	if !persistent(cl) {
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	rec := message(pk, storage.InflightKey, string(key), cl.ID)
	s.update("save in-flight", func(tx *bbolt.Tx) error { return put(tx, bucketInflight, key, rec) })
}

func (s *sessionStore) deleteInflight(cl *mqtt.Client, pk packets.Packet) {
	if !persistent(cl) {
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	// Look before writing: most completions concern messages never stored (see OnQosPublish),
	// and an empty write transaction still costs an fsync.
	if s.has(bucketInflight, key) {
		s.update("delete in-flight", func(tx *bbolt.Tx) error { return tx.Bucket(bucketInflight).Delete(key) })
	}
}

func (s *sessionStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { s.deleteInflight(cl, pk) }

func (s *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	// mochi clears a taken-over session object after copying its queue to the new
	// connection, which goes on with the same packet ids: the stored queue is still the
	// session's. (Deleting it also cost one fsync per message while the takeover was held.)
	if cl.IsTakenOver() {
		return
	}
	s.deleteInflight(cl, pk)
}

// OnStopped runs once every connection has ended, before Stop: the queues in memory are what
// a restart must restore, so the stored ones are replaced by them in one transaction. This
// settles whatever the per-message writes could not order exactly against a session takeover
// (a message stored just after its session's copy was acknowledged, or stored under a packet
// id the new connection reuses).
func (s *sessionStore) OnStopped() {
	if !s.loaded.Load() {
		return
	}
	s.update("write queues", func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketInflight); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketInflight); err != nil {
			return err
		}
		for _, cl := range s.srv.Clients.GetAll() {
			if !persistent(cl) {
				continue
			}
			for _, pk := range cl.State.Inflight.GetAll(false) {
				if pk.FixedHeader.Type == packets.Puback {
					continue
				}
				key := inflightKey(cl.ID, pk.PacketID)
				if err := put(tx, bucketInflight, key, message(pk, storage.InflightKey, string(key), cl.ID)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (s *sessionStore) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	key := []byte(pk.TopicName)
	if r == -1 { // an empty retained payload clears the topic
		s.update("clear retained", func(tx *bbolt.Tx) error { return tx.Bucket(bucketRetained).Delete(key) })
		return
	}
	rec := message(pk, storage.RetainedKey, pk.TopicName, cl.ID)
	s.update("save retained", func(tx *bbolt.Tx) error { return put(tx, bucketRetained, key, rec) })
}

func (s *sessionStore) OnRetainedExpired(topic string) {
	s.update("expire retained", func(tx *bbolt.Tx) error { return tx.Bucket(bucketRetained).Delete([]byte(topic)) })
}

// load decodes every record of a bucket. A record that does not decode fails the start: a
// broker that silently drops part of its state would hide exactly the losses tests look for.
func load[T any, P interface {
	*T
	encoding.BinaryUnmarshaler
}](s *sessionStore, bucket []byte) ([]T, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, errStoreClosed
	}
	var out []T
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var rec T
			if err := P(&rec).UnmarshalBinary(v); err != nil {
				return fmt.Errorf("%s record %q: %w", bucket, k, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

func (s *sessionStore) StoredClients() ([]storage.Client, error) {
	return load[storage.Client](s, bucketClients)
}

func (s *sessionStore) StoredSubscriptions() ([]storage.Subscription, error) {
	return load[storage.Subscription](s, bucketSubs)
}

func (s *sessionStore) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := load[storage.Message](s, bucketInflight)
	s.loaded.Store(err == nil)
	return msgs, err
}

func (s *sessionStore) StoredRetainedMessages() ([]storage.Message, error) {
	return load[storage.Message](s, bucketRetained)
}
