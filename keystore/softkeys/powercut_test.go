package softkeys

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/keystore"
)

// envPowerCut makes the test binary a child that loads keys until it is killed.
const envPowerCut = "POSAGENT_SOFTKEYS_POWERCUT_DIR"

// powerCutPIKs and powerCutMAKs are the keys the child cycles through.
var (
	powerCutPIKs = [][]byte{pikKey, pik2Key, unhex("0102030405060708 1112131415161718"), tdkKey}
	powerCutMAKs = [][]byte{makKey, mak8Key, unhex("F0E0D0C0B0A09080 7060504030201000")}
)

func openStore(dir string) (*store.DB, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		db, err := store.Open(dir)
		if err == nil || !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			return db, err
		}
	}
}

func powerCutChild(dir string) int {
	db, err := openStore(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	c := store.NewCommitter(db)
	b, err := Open(Options{DB: db, Commit: c, Root: FileRootKey(filepath.Join(dir, "root.key")), MaxSlot: 15,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		k := powerCutPIKs[i%len(powerCutPIKs)]
		if _, err := b.LoadEncrypted(bg, 2, 1, keystore.UsagePIK, ecb(kekKey, k), check(k, 4)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		m := powerCutMAKs[i%len(powerCutMAKs)]
		if _, err := b.LoadEncrypted(bg, 3, 1, keystore.UsageMAK, ecb(kekKey, m), check(m, 3)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		fmt.Fprintln(out, i)
		out.Flush()
	}
}

func TestPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	e := newEnv(t)
	e.standard()
	e.close()
	want := map[int]map[string]bool{2: {}, 3: {}}
	for _, k := range powerCutPIKs {
		want[2][kcvHex(k)] = true
	}
	for _, k := range powerCutMAKs {
		want[3][kcvHex(k)] = true
	}
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envPowerCut+"="+e.dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &lockedBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		progress := make(chan struct{}, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
		select {
		case <-progress:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: child made no progress:\n%s", round, stderr.String())
		}
		// Cut the power at a random moment, most likely in the middle of a load.
		time.Sleep(time.Duration(rand.IntN(40_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended by itself: %v\n%s", round, err, stderr.String())
		}
		e.open()
		ks := e.keys()
		for slot, kcvs := range want {
			k, ok := ks[slot]
			if !ok || !kcvs[k.KCV] {
				t.Fatalf("round %d: slot %d holds %+v (present %v), want one of %v", round, slot, k, ok, kcvs)
			}
		}
		if ks[0].KCV != "08D7B4" || ks[1].KCV != "EB7A8D" {
			t.Fatalf("round %d: transport or KEK damaged: %v", round, ks)
		}
		if _, err := e.b.MAC(bg, 3, keystore.MACUnionPayECB, []byte("after the cut")); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if strings.Contains(e.log.String(), "does not open") {
			t.Fatalf("round %d: unreadable records after a power cut:\n%s", round, e.log.String())
		}
		t.Logf("round %d: slot 2 %s, slot 3 %s", round, ks[2].KCV, ks[3].KCV)
		e.close()
	}
}
