package ecrclient

import (
	"context"
	"errors"
	"testing"
	"time"
)

func st(status, sub string) reply {
	return ok(`{"statusCode":0,"data":{"processId":"P1","status":"` + status + `","subStatus":"` + sub + `"}}`)
}

const poll = 5 * time.Millisecond

type change struct{ status, sub string }

func follow(t *testing.T, f *fakeTerminal, ctx context.Context) (Status, []change, error) {
	t.Helper()
	var seen []change
	s, err := New(f.srv.URL, Options{}).Follow(ctx, "P1", poll, func(s Status) {
		seen = append(seen, change{s.Status, s.SubStatus})
	})
	return s, seen, err
}

// Repeated states are reported once; the final one is returned with its receipt.
func TestFollowReportsChanges(t *testing.T) {
	f := newFake(t)
	f.on(PathStatus,
		st("wait", "Initialize"), st("wait", "Initialize"),
		st("wait", "WaitUser"), st("wait", "WaitUser"), st("wait", "WaitUser"),
		st("wait", "ProcessingCard"), st("wait", "WaitForPinCode"), st("wait", "ProcessingCard"),
		ok(specCardSuccess))
	s, seen, err := follow(t, f, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []change{{"wait", "Initialize"}, {"wait", "WaitUser"}, {"wait", "ProcessingCard"},
		{"wait", "WaitForPinCode"}, {"wait", "ProcessingCard"}, {"success", "CardTransactionSuccess"}}
	if len(seen) != len(want) {
		t.Fatalf("changes %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("change %d = %v, want %v", i, seen[i], want[i])
		}
	}
	if s.Status != StatusSuccess || s.ChequeInfo == nil || s.ChequeInfo.RRN != "307208187011" {
		t.Errorf("final %+v", s)
	}
	if n := f.count(PathStatus); n != 9 {
		t.Errorf("%d polls, want 9 (it stops at the final state)", n)
	}
	for _, r := range f.requests() {
		if r.query.Get("processId") != "P1" {
			t.Errorf("polled processId %q", r.query.Get("processId"))
		}
	}
}

// fail and unknown end Follow as success does; they are outcomes, not errors of the call.
func TestFollowFinalStates(t *testing.T) {
	for _, body := range []string{specFail, specUnknown} {
		f := newFake(t)
		f.on(PathStatus, st("wait", "WaitUser"), ok(body))
		s, seen, err := follow(t, f, context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !s.Final() || s.Status == StatusSuccess || s.Message == "" || len(seen) != 2 {
			t.Errorf("final %+v after %v", s, seen)
		}
	}
}

// A poll without an answer is retried: the terminal keeps the process.
func TestFollowRetriesTransportErrors(t *testing.T) {
	f := newFake(t)
	f.on(PathStatus, st("wait", "WaitUser"), reply{dropConn, ""}, reply{dropConn, ""}, st("wait", "WaitUser"),
		ok(specQRSuccess))
	s, seen, err := follow(t, f, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != StatusSuccess || len(seen) != 2 {
		t.Errorf("final %+v after %v", s, seen)
	}
	if n := f.count(PathStatus); n != 5 {
		t.Errorf("%d polls, want 5", n)
	}
}

// An error answer ends Follow with that error and the last status seen.
func TestFollowStopsOnAPIError(t *testing.T) {
	f := newFake(t)
	f.on(PathStatus, st("wait", "WaitUser"), ok(specProcessNotFound), st("wait", "WaitUser"))
	s, _, err := follow(t, f, context.Background())
	if !errors.Is(err, ErrProcessNotFound) {
		t.Fatalf("error %v, want ErrProcessNotFound", err)
	}
	if s.Status != StatusWait || s.SubStatus != "WaitUser" {
		t.Errorf("last status %+v", s)
	}
	if n := f.count(PathStatus); n != 2 {
		t.Errorf("%d polls after the error answer, want 2", n)
	}
}

// The caller's context ends Follow, whatever the terminal says.
func TestFollowContext(t *testing.T) {
	f := newFake(t)
	f.on(PathStatus, st("wait", "WaitUser"))
	ctx, cancel := context.WithCancel(context.Background())
	f.hook = func(request) {
		if f.count(PathStatus) == 3 {
			cancel()
		}
	}
	s, seen, err := follow(t, f, ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if s.Status != StatusWait || len(seen) > 1 {
		t.Errorf("last %+v, changes %v", s, seen)
	}
}

// Zero means the API's recommended second.
func TestFollowDefaultInterval(t *testing.T) {
	f := newFake(t)
	f.on(PathStatus, st("wait", "WaitUser"), ok(specCardSuccess))
	var at []time.Time
	_, err := New(f.srv.URL, Options{}).Follow(context.Background(), "P1", 0, func(Status) { at = append(at, time.Now()) })
	if err != nil {
		t.Fatal(err)
	}
	if len(at) != 2 || at[1].Sub(at[0]) < DefaultPollInterval {
		t.Errorf("polls at %v, want them %v apart at least", at, DefaultPollInterval)
	}
}
