package operator

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/termconfig"
	bolt "go.etcd.io/bbolt"
)

// TestNoSecretsInLogs runs every kind of event with the log at debug level and checks that no
// password, no hash and no salt (raw, hex or base64) appears in the log or the audit events.
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	passwords := []string{FactorySupervisorPassword, FactoryAdminPassword, supPW, adminPW,
		"505050", "73914682", "58203961", "41736209"}
	e.admin()
	e.addOperator("01", "73914682")
	_, _ = e.s.SignOn(ctx, "01", "58203961") // wrong
	_, _ = e.s.SignOn(ctx, "01", "41736209") // wrong
	_, _ = e.s.SignOn(ctx, "01", "41736209") // locks
	_, _ = e.s.SignOn(ctx, "73914682", "01") // swapped fields
	sup := e.supervisor()
	_ = e.s.SetPassword(ctx, sup, "01", "", "41736209")
	_ = e.s.Remove(ctx, sup, "01")
	_, _ = e.s.Authorise(ctx, termconfig.OpVoid, SupervisorCode, supPW)
	_, _ = e.s.Authorise(ctx, termconfig.OpVoid, SupervisorCode, "58203961")
	_ = e.s.CheckAdmin(ctx, adminPW)
	_ = e.s.CheckAdmin(ctx, "58203961")
	_, _ = e.s.Verify(ctx, SupervisorCode, supPW)

	var hay strings.Builder
	hay.WriteString(e.logBuf.String())
	for _, ev := range e.audit.All() {
		fmt.Fprintf(&hay, "%s %v %+v %#v\n", ev.Action, ev.Fields, ev.Fields, ev.Fields)
	}
	// A record printed by mistake shows no hash either.
	var secrets [][]byte
	if err := e.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketName)).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			fmt.Fprintf(&hay, "%v %+v %#v %s\n", r, r, r, r.Hash)
			secrets = append(secrets, r.Hash.Key, r.Hash.Salt)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	log := hay.String()
	if !strings.Contains(log, `"level":"DEBUG"`) || !strings.Contains(log, "operator.lockedOut") {
		t.Fatal("the debug log did not capture the events")
	}
	for _, pw := range passwords {
		if strings.Contains(log, pw) {
			t.Errorf("password %s in the log", pw)
		}
	}
	for _, b := range secrets {
		for _, form := range []string{string(b), hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
			base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
			base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), fmt.Sprint(b)} {
			if strings.Contains(log, form) {
				t.Errorf("hash material %q in the log", form)
			}
		}
	}
}
