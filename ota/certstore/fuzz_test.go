package certstore

import (
	"bytes"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/posagent/posagent/internal/testpki"
	bolt "go.etcd.io/bbolt"
)

// FuzzPut feeds arbitrary PEM text to Put: it must not panic, a refusal is an *InvalidError
// that leaves the stored entry byte for byte as it was, and an acceptance stores the first
// certificate given.
func FuzzPut(f *testing.F) {
	s, db := openStore(f)
	ca := testpki.NewCA(f)
	cli := ca.Client(f, "DEV-1")
	cliPEM, cliKey := chainOf(cli), pkcs8(f, cli.PrivateKey)
	if _, err := s.Put(ctx, "f", UsageClient, cliPEM, cliKey, time.Now()); err != nil {
		f.Fatal(err)
	}
	caPEM := pemOf("CERTIFICATE", ca.Cert.Raw)
	f.Add(string(cliPEM), string(cliKey), byte(1))
	f.Add(string(caPEM), "", byte(0))
	f.Add(string(cliPEM)+string(caPEM), string(cliKey), byte(1))
	f.Add(string(cliPEM[:len(cliPEM)/2]), string(cliKey), byte(2))
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "", byte(0))

	usages := []Usage{UsageCA, UsageClient, UsageServer, "other"}
	stored := func() []byte {
		var v []byte
		_ = db.View(func(tx *bolt.Tx) error {
			v = bytes.Clone(tx.Bucket([]byte(BucketName)).Get([]byte("f")))
			return nil
		})
		return v
	}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM string, u byte) {
		before := stored()
		info, err := s.Put(ctx, "f", usages[int(u)%len(usages)], []byte(certPEM), []byte(keyPEM), time.Now())
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("refusal is not an *InvalidError: %v", err)
			}
			if !bytes.Equal(stored(), before) {
				t.Fatal("a refused Put changed the stored entry")
			}
			return
		}
		block, _ := pem.Decode([]byte(certPEM))
		if block == nil || info.SHA256 != fingerprint(block.Bytes) {
			t.Fatalf("accepted, but info %+v is not of the first certificate", info)
		}
		if got, ok, err := s.Get("f"); err != nil || !ok || got != info {
			t.Fatalf("get after put: %+v %v %v", got, ok, err)
		}
	})
}
