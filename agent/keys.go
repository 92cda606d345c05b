package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/posagent/posagent/agent/command"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/board"
	"github.com/posagent/posagent/drivers/pinpad"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/padkeys"
	"github.com/posagent/posagent/keystore/softkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// openKeystore picks the key backend the configuration and the board call for and opens
// the key store on it.
func (a *Agent) openKeystore(ctx context.Context) error {
	var backend keystore.Backend
	switch a.keyBackend() {
	case "pinpad":
		backend = padkeys.New(a.hw.PINPad, a.hw.Ready())
	default:
		soft, err := softkeys.Open(softkeys.Options{DB: a.db, Commit: a.commit,
			Root: softkeys.FileRootKey(a.cfg.RootKeyFile()), Logger: a.log})
		if err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		if err := a.injectTransport(ctx, soft); err != nil {
			return err
		}
		backend = soft
	}
	ks, err := keystore.Open(keystore.Options{DB: a.db, Commit: a.commit, Backend: backend, Logger: a.log})
	if err != nil {
		return err
	}
	if backend.Name() == "software" {
		// The PIN pad's keys are checked by runKeys once the pad is attached.
		if err := ks.Reconcile(ctx); err != nil {
			return err
		}
	}
	ks.SetActiveKEK(int(a.term.Active().HostParameters.MasterKeyIndex))
	a.keys = ks
	return nil
}

// keyBackend resolves keystore.backend "auto": the PIN pad when the board has one.
func (a *Agent) keyBackend() string {
	if b := a.cfg.Keystore.Backend; b != "auto" {
		return b
	}
	for _, d := range a.board.Profile().Serial {
		if d.Kind == board.KindPINPad {
			return "pinpad"
		}
	}
	return "software"
}

// injectTransport is the factory step of the software backend: the transport key from
// keystore.transport_key_file, when the backend has none yet.
func (a *Agent) injectTransport(ctx context.Context, soft *softkeys.Backend) error {
	path := a.cfg.Keystore.TransportKeyFile
	if path == "" {
		return nil
	}
	keys, err := soft.Keys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Slot == keystore.TransportSlot {
			return nil
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("keystore: transport key file: %w", err)
	}
	text := strings.TrimSpace(string(raw))
	alg := keystore.TDES
	if rest, ok := strings.CutPrefix(text, "aes:"); ok {
		alg, text = keystore.AES, rest
	}
	key, err := hex.DecodeString(text)
	clear(raw)
	if err != nil {
		// Never quote the file: it is a key.
		return errors.New("keystore: transport key file is not hex")
	}
	k, err := soft.InjectTransport(ctx, alg, key, false)
	clear(key)
	if err != nil {
		return fmt.Errorf("keystore: transport key: %w", err)
	}
	a.log.Info("transport key injected", "kcv", k.KCV, "alg", k.Algorithm.String())
	return nil
}

// runKeys keeps the key store in step: the active master key index follows the terminal
// configuration, the map is checked against a PIN pad once it answers, a tamper empties
// it, and a terminal without its active master key asks the TMS for one (up/req
// keys.request) at start and then daily.
func (a *Agent) runKeys(ctx context.Context) error {
	updates, cancel := a.term.Subscribe()
	defer cancel()
	select {
	case <-a.hw.Ready():
	case <-ctx.Done():
		return nil
	}
	if err := a.keys.Reconcile(ctx); err != nil {
		a.log.Warn("key map check", "err", err)
	}
	ask := time.NewTimer(0)
	defer ask.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case doc := <-updates:
			if i := int(doc.HostParameters.MasterKeyIndex); i != a.keys.ActiveKEK() {
				a.keys.SetActiveKEK(i)
				a.log.Info("active master key index changed", "index", i)
				a.triggerStats()
				ask.Reset(0)
			}
		case <-ask.C:
			a.requestKeysIfMissing(ctx)
			ask.Reset(24 * time.Hour)
		}
	}
}

func (a *Agent) requestKeysIfMissing(ctx context.Context) {
	kek := keystore.KEKRole(a.keys.ActiveKEK())
	for _, e := range a.keys.Entries() {
		if e.Role == kek {
			return
		}
	}
	body := map[string]any{"serial": a.board.Identity().Serial, "backend": a.keys.BackendName(), "missing": []string{string(kek)}}
	if _, err := a.Outbox.Append(ctx, tmsproto.StreamReq, "keys.request", body); err != nil {
		a.log.Warn("keys.request not queued", "err", err)
		return
	}
	a.log.Info("asked the TMS for keys", "missing", kek)
}

// onPadEvent handles the PIN pad's events the agent cares about before payments do.
func (a *Agent) onPadEvent(ev pinpad.Event) {
	if ev.Kind == pinpad.EventKey {
		a.onPadKey(ev.Key)
		return
	}
	if ev.Kind != pinpad.EventTamper {
		return
	}
	ctx := context.Background()
	a.log.Error("PIN pad tamper: the pad zeroised its keys")
	if a.keys != nil && a.keys.BackendName() == "pinpad" {
		if err := a.keys.Forget(ctx, "PIN pad tamper"); err != nil {
			a.log.Error("key map not emptied after a tamper", "err", err)
		}
	}
	a.event(ctx, "keys.tamper", map[string]any{"device": "pinpad"})
	a.triggerStats()
}

// keysLoadBody is the body of keys.load: TR-31 key blocks by role.
type keysLoadBody struct {
	Keys []keyBlockBody `cbor:"keys"`
	// KEK is the master key index the working keys come under; absent: the active one.
	KEK *int `cbor:"kek,omitempty"`
}

type keyBlockBody struct {
	Role  string `cbor:"role"`
	Block string `cbor:"block"`
	// KCV is the check value the key must have, when the key system gives one.
	KCV string `cbor:"kcv,omitempty"`
}

// maxKeysPerLoad bounds a keys.load: every master key index and the three working keys.
const maxKeysPerLoad = keystore.DefaultKEKSlots + 3

func checkKeysLoad(body []byte) (any, error) {
	var b keysLoadBody
	if err := tmsproto.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	if len(b.Keys) == 0 || len(b.Keys) > maxKeysPerLoad {
		return nil, fmt.Errorf("keys: %d entries (1..%d)", len(b.Keys), maxKeysPerLoad)
	}
	for i, k := range b.Keys {
		if _, err := tr31.Parse(k.Block); err != nil {
			return nil, fmt.Errorf("keys[%d] (%s): %w", i, k.Role, err)
		}
		if k.KCV != "" {
			if _, err := hex.DecodeString(k.KCV); err != nil || len(k.KCV) != 6 {
				return nil, fmt.Errorf("keys[%d] (%s): kcv: not 6 hex digits", i, k.Role)
			}
		}
	}
	if b.KEK != nil && (*b.KEK < 0 || *b.KEK >= keystore.DefaultKEKSlots) {
		return nil, fmt.Errorf("kek: %d is outside 0..%d", *b.KEK, keystore.DefaultKEKSlots-1)
	}
	return b, nil
}

// keyResult is what keys.load reports per key: enough to check, nothing to reveal.
type keyResult struct {
	Role string `cbor:"role"`
	KCV  string `cbor:"kcv"`
	Alg  string `cbor:"alg"`
	Slot int    `cbor:"slot"`
}

func (a *Agent) keysLoad(ctx context.Context, req *command.Request) (any, error) {
	b := req.Body.(keysLoadBody)
	l := keystore.Load{KEK: -1, Command: req.Command.ID, Source: "tr31"}
	if b.KEK != nil {
		l.KEK = *b.KEK
	}
	for _, k := range b.Keys {
		l.Items = append(l.Items, keystore.Item{Role: keystore.Role(k.Role), Block: k.Block, KCV: k.KCV})
	}
	loaded, err := a.keys.Load(ctx, l)
	if err != nil {
		a.event(ctx, "keys.rejected", map[string]any{"command": req.Command.ID, "reason": err.Error()})
		return nil, err
	}
	out := make([]keyResult, len(loaded))
	for i, e := range loaded {
		out[i] = keyResult{Role: string(e.Role), KCV: e.KCV, Alg: e.Algorithm.String(), Slot: e.Slot}
	}
	a.event(ctx, "keys.loaded", map[string]any{"command": req.Command.ID, "keys": out})
	a.triggerStats()
	return map[string]any{"keys": out}, nil
}

type keysEraseBody struct {
	Scope string `cbor:"scope"` // "loaded" (master and working keys) or "all" (the transport key too)
}

func checkKeysErase(body []byte) (any, error) {
	var b keysEraseBody
	if err := tmsproto.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	if b.Scope != "loaded" && b.Scope != "all" {
		return nil, fmt.Errorf("scope: %q is not loaded or all", b.Scope)
	}
	return b, nil
}

func (a *Agent) keysErase(ctx context.Context, req *command.Request) (any, error) {
	b := req.Body.(keysEraseBody)
	if err := a.keys.Erase(ctx, b.Scope == "all", "keys.erase "+req.Command.ID); err != nil {
		return nil, err
	}
	a.event(ctx, "keys.erased", map[string]any{"command": req.Command.ID, "scope": b.Scope})
	a.triggerStats()
	return map[string]any{"scope": b.Scope}, nil
}

// KeysInfo is the key-loading state in the stats: per role, where and when it came from.
type KeysInfo struct {
	Backend   string         `cbor:"backend"`
	ActiveKEK int            `cbor:"activeKek"`
	Keys      []KeyStateInfo `cbor:"keys"`
}

// KeyStateInfo is one loaded role in the stats.
type KeyStateInfo struct {
	Role    string `cbor:"role"`
	KCV     string `cbor:"kcv"`
	Alg     string `cbor:"alg"`
	At      int64  `cbor:"at"`
	Command string `cbor:"cmd,omitempty"`
	Source  string `cbor:"src"`
	Parent  string `cbor:"parent,omitempty"`
}

func (a *Agent) keysInfo() *KeysInfo {
	if a.keys == nil {
		return nil
	}
	ki := &KeysInfo{Backend: a.keys.BackendName(), ActiveKEK: a.keys.ActiveKEK(), Keys: []KeyStateInfo{}}
	for _, e := range a.keys.Entries() {
		ki.Keys = append(ki.Keys, KeyStateInfo{Role: string(e.Role), KCV: e.KCV, Alg: e.Algorithm.String(),
			At: e.LoadedAt, Command: e.Command, Source: e.Source, Parent: string(e.Parent)})
	}
	return ki
}
