package envoy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is an Envoy release line, major and minor.
type Version struct {
	Major, Minor int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	return v.Major < w.Major || (v.Major == w.Major && v.Minor < w.Minor)
}

// Rules is the Envoy release whose API schema and validation rules this
// package checks bootstraps against: go-control-plane's envoy module
// v1.36.0 (go.mod pins it; TestEnvoyPairing checks the pairing). It is
// the oldest Envoy a proxy image may run: a later Envoy accepts what 1.36
// accepts, an earlier one may not.
var Rules = Version{Major: 1, Minor: 36}

// ParseVersion reads "1.36" or "1.36.2" (a leading "v" is allowed).
func ParseVersion(s string) (Version, error) {
	m := versionText.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("%q is not an Envoy version such as 1.36", s)
	}
	return versionOf(m[1], m[2]), nil
}

var (
	versionText = regexp.MustCompile(`^v?(\d{1,4})\.(\d{1,4})(?:\.\d{1,4})?$`)
	// versionTag is an Envoy image tag: envoyproxy/envoy's v1.36.2,
	// distroless-v1.36.2, contrib-debug-v1.36-latest, or a mirror's
	// 1.36.2-hardened.
	versionTag = regexp.MustCompile(`^(?:[a-z]+-)*v?(\d{1,4})\.(\d{1,4})(?:\.\d{1,4})?(?:[-+_.].*)?$`)
)

func versionOf(major, minor string) Version {
	a, _ := strconv.Atoi(major)
	b, _ := strconv.Atoi(minor)
	return Version{Major: a, Minor: b}
}

// VersionFromImage reads the Envoy version an image's tag names. Only a
// repository whose name says envoy counts (istio/proxyv2:1.24 is Istio's
// version, not Envoy's); ok is false when the image does not tell.
func VersionFromImage(image string) (Version, bool) {
	name, _, _ := strings.Cut(image, "@")
	slash := strings.LastIndexByte(name, '/')
	repo, tag, found := strings.Cut(name[slash+1:], ":")
	if !found || !strings.Contains(strings.ToLower(repo), "envoy") {
		return Version{}, false
	}
	m := versionTag.FindStringSubmatch(tag)
	if m == nil {
		return Version{}, false
	}
	return versionOf(m[1], m[2]), true
}
