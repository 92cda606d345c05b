package manifest

import (
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
	"time"
)

// signed verifies r signed by a fresh key under kid "rel-1", as the agent would.
func signed(t *testing.T, r Release) *Signed {
	t.Helper()
	pub, priv := newKey(t)
	s, err := mustVerifier(t, map[string]ed25519.PublicKey{"rel-1": pub}).Verify(mustSign(t, priv, "rel-1", r))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(cs []Component) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestCheck(t *testing.T) {
	arm64T3 := Terminal{Model: "T3", Arch: "linux/arm64", Now: testNow}
	issued := time.Unix(sampleRelease().Issued, 0)
	expires := time.Unix(sampleRelease().Expires, 0)
	with := func(base Terminal, f func(*Terminal)) Terminal { f(&base); return base }
	release := func(f func(*Release)) Release { r := sampleRelease(); f(&r); return r }

	tests := []struct {
		name      string
		r         Release
		term      Terminal
		names     []string
		want      []string // applicable components, when no error
		reason    Reason
		component string
	}{
		{name: "fresh T3 arm64", r: sampleRelease(), term: arm64T3,
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "model matched case-insensitively", r: sampleRelease(), term: arm64T3.withModel("t3"),
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "android terminal, agent builds for linux only", r: sampleRelease(), term: Terminal{Model: "wpos-3", Arch: "android/arm64", Now: testNow},
			reason: ReasonWrongArch, component: "posagent-arm64"},
		{name: "android terminal without agent builds", r: release(func(r *Release) { r.Components = r.Components[2:] }),
			term: Terminal{Model: "wpos-3", Arch: "android/arm64", Now: testNow}, want: []string{"kiosk", "logo", "root-ca"}},
		{name: "arm terminal takes the arm build", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Arch = "linux/arm" }),
			want: []string{"posagent-arm", "t3-firmware", "logo", "root-ca"}},
		{name: "no model matches only model-free components", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Model = "" }),
			want: []string{"posagent-arm64", "logo", "root-ca"}},
		{name: "everything installed", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"posagent-arm64": "1.5", "t3-firmware": "2.1.0", "logo": "1.0", "root-ca": "2026.1.0"}
		}), want: []string{}},
		{name: "dev build is upgraded", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"posagent-arm64": "dev", "t3-firmware": "2.1.0", "logo": "1", "root-ca": "2026.1"}
		}), want: []string{"posagent-arm64"}},
		{name: "pre-release upgraded to release", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"posagent-arm64": "1.5.0-rc.2"}
		}), want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "same serial again", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.HighWater = map[string]uint64{"rel-1": 7} }),
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "high-water of another key", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.HighWater = map[string]uint64{"rel-0": 1 << 63} }),
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "last second", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Now = expires }),
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "issued within the skew", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Now = issued.Add(-ClockSkew) }),
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "names that apply", r: sampleRelease(), term: arm64T3, names: []string{"logo", "posagent-arm64"},
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "forced reinstall", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"posagent-arm64": "1.6", "t3-firmware": "2.1.0"}
			t.Force = true
		}), want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},
		{name: "exactly max size", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.MaxSize = 9 << 20 }),
			want: []string{"posagent-arm64", "t3-firmware", "logo", "root-ca"}},

		{name: "expired", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Now = expires.Add(time.Second) }),
			reason: ReasonExpired},
		{name: "expired even when forced", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Now = expires.Add(time.Hour); t.Force = true }),
			reason: ReasonExpired},
		{name: "not yet valid", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Now = issued.Add(-ClockSkew - time.Second) }),
			reason: ReasonNotYetValid},
		{name: "rollback", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.HighWater = map[string]uint64{"rel-1": 8} }),
			reason: ReasonRollback},
		{name: "rollback even when forced", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.HighWater = map[string]uint64{"rel-1": 1 << 63}
			t.Force = true
		}), reason: ReasonRollback},
		{name: "downgrade", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"t3-firmware": "2.1.0", "logo": "1.0.1"}
		}), reason: ReasonDowngrade, component: "logo"},
		{name: "downgrade of the agent", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"posagent-arm64": "1.5.1"}
		}), reason: ReasonDowngrade, component: "posagent-arm64"},
		{name: "downgrade to a pre-release", r: release(func(r *Release) { r.Components[0].Version = "1.5.0-rc.1" }), term: with(arm64T3, func(t *Terminal) {
			t.Installed = map[string]string{"posagent-arm64": "1.5.0"}
		}), reason: ReasonDowngrade, component: "posagent-arm64"},
		{name: "wrong model", r: release(func(r *Release) { r.Components = r.Components[2:4] }), term: arm64T3.withModel("F30"),
			reason: ReasonWrongModel},
		{name: "named component for another model", r: sampleRelease(), term: arm64T3, names: []string{"kiosk"},
			reason: ReasonWrongModel, component: "kiosk"},
		{name: "named agent for another arch", r: sampleRelease(), term: arm64T3, names: []string{"posagent-arm"},
			reason: ReasonWrongArch, component: "posagent-arm"},
		{name: "no agent build for this arch", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.Arch = "linux/amd64" }),
			reason: ReasonWrongArch, component: "posagent-arm64"},
		{name: "too large", r: sampleRelease(), term: with(arm64T3, func(t *Terminal) { t.MaxSize = 4 << 20 }),
			reason: ReasonTooLarge, component: "posagent-arm64"},
		{name: "too large by default", r: release(func(r *Release) { r.Components[4].Size = DefaultMaxSize + 1 }), term: arm64T3,
			reason: ReasonTooLarge, component: "logo"},
		{name: "mixed release", r: sampleRelease(), term: arm64T3, names: []string{"logo", "posagent-2025"},
			reason: ReasonMixedRelease, component: "posagent-2025"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := signed(t, tc.r)
			got, err := s.Check(tc.term, tc.names)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if !reflect.DeepEqual(names(got), tc.want) {
					t.Fatalf("Check = %v, want %v", names(got), tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %v", names(got))
			}
			var me *Error
			if !errors.As(err, &me) || me.Reason != tc.reason || me.Component != tc.component {
				t.Fatalf("Check = %v (component %q), want reason %q component %q", err, ReasonOf(err), tc.reason, tc.component)
			}
		})
	}
}

func (t Terminal) withModel(m string) Terminal { t.Model = m; return t }
