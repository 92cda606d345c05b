package manifest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	if r := sampleRelease(); r.Validate() != nil {
		t.Fatalf("sample: %v", r.Validate())
	}
	tests := []struct {
		name      string
		change    func(r *Release)
		component string // the component the error names
		detail    string // in the message
	}{
		{"version", func(r *Release) { r.V = 2 }, "", "version 2"},
		{"no name", func(r *Release) { r.Name = "" }, "", "name"},
		{"name with space", func(r *Release) { r.Name = "nov release" }, "", "name"},
		{"serial 0", func(r *Release) { r.Serial = 0 }, "", "serial"},
		{"issued 0", func(r *Release) { r.Issued = 0 }, "", "issued"},
		{"expires before issued", func(r *Release) { r.Expires = r.Issued }, "", "expires"},
		{"valid too long", func(r *Release) { r.Expires = r.Issued + 367*86400 }, "", "at most"},
		{"no components", func(r *Release) { r.Components = nil }, "", "0 components"},
		{"too many components", func(r *Release) {
			for len(r.Components) <= MaxComponents {
				c := r.Components[5]
				c.Name = fmt.Sprintf("c%d", len(r.Components))
				r.Components = append(r.Components, c)
			}
		}, "", "components, want 1..256"},
		{"name twice", func(r *Release) { r.Components[1].Name = "posagent-arm64" }, "posagent-arm64", "listed twice"},
		{"name upper case", func(r *Release) { r.Components[2].Name = "T3-fw" }, "", "component name"},
		{"name with slash", func(r *Release) { r.Components[2].Name = "a/b" }, "", "component name"},
		{"unknown kind", func(r *Release) { r.Components[2].Kind = "kernel" }, "t3-firmware", "unknown kind"},
		{"bad version", func(r *Release) { r.Components[2].Version = "v2" }, "t3-firmware", "version"},
		{"empty version", func(r *Release) { r.Components[2].Version = "" }, "t3-firmware", "version"},
		{"empty model", func(r *Release) { r.Components[2].Models = []string{""} }, "t3-firmware", "model"},
		{"model twice", func(r *Release) { r.Components[3].Models = []string{"F20", "f20"} }, "kiosk", "listed twice"},
		{"agent without arch", func(r *Release) { r.Components[0].Arch = "" }, "posagent-arm64", "arch is required"},
		{"unknown arch", func(r *Release) { r.Components[2].Arch = "linux/mips" }, "t3-firmware", "arch"},
		{"arch with GOARM", func(r *Release) { r.Components[1].Arch = "linux/arm/v7" }, "posagent-arm", "arch"},
		{"size 0", func(r *Release) { r.Components[4].Size = 0 }, "logo", "size"},
		{"size negative", func(r *Release) { r.Components[4].Size = -1 }, "logo", "size"},
		{"sha256 short", func(r *Release) { r.Components[4].SHA256 = r.Components[4].SHA256[:31] }, "logo", "sha256"},
		{"sha256 missing", func(r *Release) { r.Components[4].SHA256 = nil }, "logo", "sha256"},
		{"apk without package", func(r *Release) { r.Components[3].Package = "" }, "kiosk", "package"},
		{"apk bad package", func(r *Release) { r.Components[3].Package = "kiosk" }, "kiosk", "package"},
		{"apk without versionCode", func(r *Release) { r.Components[3].VersionCode = 0 }, "kiosk", "versionCode"},
		{"package on a file", func(r *Release) { r.Components[4].Package = "a.b" }, "logo", "apk only"},
		{"file without location", func(r *Release) { r.Components[4].Location = "" }, "logo", "required"},
		{"file without path", func(r *Release) { r.Components[4].Path = "" }, "logo", "required"},
		{"bad location", func(r *Release) { r.Components[4].Location = "../etc" }, "logo", "location"},
		{"path with slash", func(r *Release) { r.Components[4].Path = "a/b" }, "logo", "slash"},
		{"path dotdot", func(r *Release) { r.Components[4].Path = ".." }, "logo", ".."},
		{"path dot", func(r *Release) { r.Components[4].Path = "." }, "logo", `is "."`},
		{"path backslash", func(r *Release) { r.Components[4].Path = `a\b` }, "logo", "backslash"},
		{"path NUL", func(r *Release) { r.Components[4].Path = "a\x00b" }, "logo", "control"},
		{"path too long", func(r *Release) { r.Components[4].Path = strings.Repeat("a", MaxPathLen+1) }, "logo", "bytes"},
		{"path not UTF-8", func(r *Release) { r.Components[4].Path = "a\xffb" }, "logo", "UTF-8"},
		{"certificate usage unknown", func(r *Release) { r.Components[5].Location = "x" }, "root-ca", "ca, client or server"},
		{"certificate without usage", func(r *Release) { r.Components[5].Location = "" }, "root-ca", "ca, client or server"},
		{"path on a certificate", func(r *Release) { r.Components[5].Path = "ca.pem" }, "root-ca", "file and config only"},
		{"location on an apk", func(r *Release) { r.Components[3].Location = "images" }, "kiosk", "file, config and certificate only"},
		{"two agents for one arch and every model", func(r *Release) { r.Components[1].Arch = "linux/arm64" }, "posagent-arm", "overlaps"},
		{"two agents sharing a model", func(r *Release) {
			r.Components[0].Models = []string{"T3", "F20"}
			r.Components[1].Arch = "linux/arm64"
			r.Components[1].Models = []string{"f20"}
		}, "posagent-arm", "overlaps"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleRelease()
			tc.change(&r)
			err := r.Validate()
			var me *Error
			if !errors.As(err, &me) || me.Reason != ReasonInvalid {
				t.Fatalf("Validate = %v, want reason invalid", err)
			}
			if me.Component != tc.component || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("Validate = %v (component %q), want component %q and %q in the message", err, me.Component, tc.component, tc.detail)
			}
		})
	}
}

// TestValidateAllowed: what the rules leave open is accepted.
func TestValidateAllowed(t *testing.T) {
	r := sampleRelease()
	r.Components[0].Models = []string{"T3"}
	r.Components[1].Arch = "linux/arm64"
	r.Components[1].Models = []string{"F20", "WPOS-3"} // same arch, disjoint models
	r.Components = append(r.Components,
		Component{Name: "settings", Kind: KindConfig, Version: "4", Size: 10, SHA256: sum("cfg")},
		Component{Name: "settings-2", Kind: KindConfig, Version: "4.0-rc.1", Size: 10, SHA256: sum("cfg"), Location: "etc", Path: "app.conf"},
	)
	r.Expires = r.Issued + int64(MaxValidity.Seconds())
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidateReportsAll: several violations are listed together, bounded.
func TestValidateReportsAll(t *testing.T) {
	r := sampleRelease()
	r.Serial = 0
	r.Components[2].Size = 0
	r.Components[4].Path = "a/b"
	err := r.Validate()
	for _, want := range []string{"serial", `"t3-firmware": size`, `"logo": path`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
	r = sampleRelease()
	for i := range r.Components {
		r.Components[i].Size = 0
		r.Components[i].SHA256 = nil
		r.Components[i].Version = "x"
	}
	err = r.Validate()
	if n := strings.Count(err.Error(), "\n") + 1; n != maxProblems+1 || !strings.Contains(err.Error(), "and 2 more") {
		t.Errorf("%d lines: %v", n, err)
	}
}
