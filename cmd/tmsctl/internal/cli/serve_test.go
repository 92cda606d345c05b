package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/posagent/posagent/agent/backoff"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/posagent/posagent/internal/testbroker"
	"github.com/posagent/posagent/ota/blob"
	"github.com/posagent/posagent/ota/transfer"
)

// blobTerminal is the terminal's side: a blob.Client fed by a paho client subscribed to its
// down/blob topics, publishing its requests on up/blob.
type blobTerminal struct {
	pc     paho.Client
	dev    string
	client *blob.Client
}

func (b *blobTerminal) PublishBlob(ctx context.Context, tid string, payload []byte) error {
	tok := b.pc.Publish(tmsproto.BlobUpTopic(b.dev, tid), 1, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startBlobTerminal(t *testing.T, br *testbroker.Broker, dev string) *blobTerminal {
	t.Helper()
	b := &blobTerminal{dev: dev}
	b.client = blob.NewClient(b, slog.New(slog.DiscardHandler))
	b.pc = paho.NewClient(paho.NewClientOptions().AddBroker(br.URL()).SetClientID(dev).SetUsername(dev).
		SetPassword(br.DevicePassword(dev)).SetCleanSession(true).SetOrderMatters(true))
	if tok := b.pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("terminal connect: %v", tok.Error())
	}
	t.Cleanup(func() { b.pc.Disconnect(0) })
	tok := b.pc.Subscribe(tmsproto.BlobDownTopic(dev, "+"), 1, func(_ paho.Client, m paho.Message) {
		if _, tid, _, ok := tmsproto.ParseBlobTopic(m.Topic()); ok {
			b.client.Deliver(tid, m.Payload())
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("terminal subscribe: %v", tok.Error())
	}
	return b
}

func (b *blobTerminal) fetch(ctx context.Context, t *testing.T, tid string, want []byte) error {
	t.Helper()
	sum := sha256.Sum256(want)
	dir := t.TempDir()
	tr := &transfer.Transfer{Path: filepath.Join(dir, "f"), Size: int64(len(want)), SHA256: sum[:],
		Source: b.client.Source(tid, int64(len(want))), State: transfer.FileState{Path: filepath.Join(dir, "cp")},
		Retry: backoff.Policy{Base: 10 * time.Millisecond, Cap: 100 * time.Millisecond}, Logger: slog.New(slog.DiscardHandler)}
	if _, err := tr.Run(ctx); err != nil {
		return err
	}
	got, err := os.ReadFile(tr.Path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: transferred bytes differ", tid)
	}
	return nil
}

func TestServe(t *testing.T) {
	const dev = "SERVE-1"
	br := testbroker.Start(t, testbroker.Options{Devices: []string{dev}})
	dir := t.TempDir()
	big := bytes.Repeat([]byte("posagent release bytes "), 30000) // ~700 KiB, several blocks
	small := []byte("#!/bin/sh\necho hook\n")
	for name, data := range map[string][]byte{"agent-1.4.0.bin": big, "hook": small} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx := testCtx(t)
	serveCtx, stop := context.WithCancel(ctx)
	r := &run{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.code = Run(serveCtx, testEnv(r, "", false, map[string]string{"TMS_PASSWORD": br.TMSPassword()}),
			[]string{"serve", "--broker", br.URL(), "--username", br.TMSUser(), "--dir", dir}, Commands())
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.stderr.String(), "serving 2 files") {
		if time.Now().After(deadline) {
			stop()
			<-done
			t.Fatalf("serve did not start: %d %s", r.code, r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	bigSum := sha256.Sum256(big)
	bigID := blob.ID(bigSum[:])
	if !strings.Contains(r.stdout.String(), bigID) || !strings.Contains(r.stdout.String(), "agent-1.4.0.bin") {
		t.Fatalf("file table %q", r.stdout.String())
	}

	term := startBlobTerminal(t, br, dev)
	// By content id, and by file name.
	if err := term.fetch(ctx, t, bigID, big); err != nil {
		t.Fatalf("by id: %v", err)
	}
	if err := term.fetch(ctx, t, "hook", small); err != nil {
		t.Fatalf("by name: %v", err)
	}
	// agent-1.4.0.bin is no transfer id (dots): reachable only by its content id.
	err := term.fetch(ctx, t, "nosuchfile", small)
	var se *blob.ServerError
	if !errors.As(err, &se) || se.Msg != blob.ErrTextUnknown {
		t.Fatalf("unknown transfer: %v", err)
	}

	stop()
	<-done
	if r.code != ExitOK {
		t.Fatalf("status %d: %s", r.code, r.stderr.String())
	}
	if !strings.Contains(r.stderr.String(), "blob request") || !strings.Contains(r.stderr.String(), "device="+dev) {
		t.Fatalf("requests not logged: %s", r.stderr.String())
	}
}

func TestServeUsage(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve"}, "--dir is required"},
		{[]string{"serve", "--dir", t.TempDir(), "--device", "a/b"}, "--device"},
		{[]string{"serve", "--dir", t.TempDir(), "extra"}, "unexpected argument"},
		{[]string{"serve", "--dir", filepath.Join(t.TempDir(), "missing")}, "no such file"},
	} {
		r := tmsctl(ctx, "", c.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr.String(), c.want) {
			t.Errorf("%v: %d %q", c.args, r.code, r.stderr.String())
		}
	}
}
