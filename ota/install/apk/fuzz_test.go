package apk_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/posagent/posagent/ota/install/apk"
)

// FuzzParseList: pm's output is outside input. Whatever it is, the parser does not panic, and
// what it accepts is well-formed and renders back to the same map.
func FuzzParseList(f *testing.F) {
	f.Add([]byte("package:com.a versionCode:12\npackage:com.b versionCode:1\n"))
	f.Add([]byte("package:com.a versionCode:12\r\n\r\n"))
	f.Add([]byte("Error: could not access the Package Manager.\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		got, err := apk.ParseList(out)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range slices.Sorted(maps.Keys(got)) {
			if !apk.ValidPackage(p) || got[p] < 0 {
				t.Fatalf("accepted package %q versionCode %d", p, got[p])
			}
			fmt.Fprintf(&b, "package:%s versionCode:%d\n", p, got[p])
		}
		again, err := apk.ParseList([]byte(b.String()))
		if err != nil || !maps.Equal(got, again) {
			t.Fatalf("re-parse: %v %v, want %v", again, err, got)
		}
	})
}
