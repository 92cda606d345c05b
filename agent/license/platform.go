package license

import (
	"strings"

	"github.com/posagent/posagent/agent/buildinfo"
)

// CurrentPlatform is the platform of this build in licence form: buildinfo.Target with the
// slashes gone, e.g. "linux/arm64" → "linux-arm64", "linux/arm/v7" → "linux-armv7".
func CurrentPlatform() string {
	os, arch, _ := strings.Cut(buildinfo.Target(), "/")
	return os + "-" + strings.ReplaceAll(arch, "/", "")
}
