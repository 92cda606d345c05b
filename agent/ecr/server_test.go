package ecr

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/posagent/posagent/agent/ecr/access"
	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/agent/termconfig"
)

// fakeTerm answers only what the API asks without an operation (innermost unit level: the
// operations are tested against the whole terminal in agent/integration).
type fakeTerm struct {
	Terminal
	doc *termconfig.Document
}

func (f fakeTerm) Config() *termconfig.Document { return f.doc }
func (f fakeTerm) DeviceInfo() DeviceInfo {
	return DeviceInfo{PosNum: "0", SerialNum: "SN1", TerminalID: f.doc.AuthHost.TerminalID}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A token past its expirationDate gets 403 (seed 003 §4.20); revoke still takes it.
func TestExpiredTokenIs403(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	commit := store.NewCommitter(db)
	t.Cleanup(commit.Close)
	clk := &clock{t: time.Date(2026, 3, 7, 15, 2, 56, 0, time.UTC)}
	acc, err := access.Open(db, commit, access.Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	doc := termconfig.Default()
	doc.ECR.ProtectedMode = true
	doc.AuthHost.TerminalID = "31452963"
	srv, err := New(Options{DB: db, Commit: commit, Terminal: fakeTerm{doc: doc}, Access: acc, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv)
	t.Cleanup(ts.Close)
	get := func(path, token string) (int, envelope) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if token != "" {
			req.Header.Set("accessToken", token)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var env envelope
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatalf("%s: %q", path, b)
		}
		return resp.StatusCode, env
	}
	go func() {
		for {
			if r, ok := acc.Pending(); ok {
				_ = acc.Approve(context.Background(), r.ID, "test")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	code, env := get("/v2/register?name=Kashier1", "")
	if code != 200 || env.StatusCode != 0 {
		t.Fatalf("register: %d %+v", code, env)
	}
	d := env.Data.(map[string]any)
	tok, refresh := d["accessToken"].(string), d["refreshToken"].(string)
	if d["expirationDate"] != "Mar 8, 2026 15:02:56" && d["expirationDate"] != access.FormatExpiry(clk.now().Add(24*time.Hour)) {
		t.Errorf("expirationDate %v", d["expirationDate"])
	}
	if code, env := get("/v2/deviceinfo", tok); code != 200 || env.StatusCode != 0 {
		t.Fatalf("deviceinfo: %d %+v", code, env)
	}
	clk.add(24*time.Hour + time.Second)
	if code, env := get("/v2/deviceinfo", tok); code != 403 || env.StatusCode != 999 || env.ErrorText != "Session expires and need to be updated" || env.Data != nil {
		t.Errorf("expired token: %d %+v", code, env)
	}
	code, env = get("/v2/revoke?name=Kashier1&refreshToken="+refresh, tok)
	if code != 200 || env.StatusCode != 0 {
		t.Fatalf("revoke with the expired token: %d %+v", code, env)
	}
	if code, env := get("/v2/deviceinfo", env.Data.(map[string]any)["accessToken"].(string)); code != 200 || env.StatusCode != 0 {
		t.Errorf("renewed token: %d %+v", code, env)
	}
	// Plain HTTP in protected mode is refused even when it reaches the handler.
	plain := httptest.NewServer(srv)
	defer plain.Close()
	resp, err := http.Get(plain.URL + "/v2/deviceinfo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("plain HTTP in protected mode: %d", resp.StatusCode)
	}
}
