#!/usr/bin/env bash
# Builds the istio-anchor binary (Istio's sidecar injector, test-only) once
# and caches it outside the clone, keyed by the istio.io/istio version and a
# hash of this module's sources; prints the binary's path on stdout.
#
#   bin=$(test/istio-anchor/build.sh)          # cached after the first build
#   test/istio-anchor/build.sh --force         # rebuild
#
# The first build compiles Istio and its dependencies (~900 packages): 14 min
# wall on the 2-vCPU development machine while other builds ran, 8.4 min of
# CPU. Progress goes to stderr. See README.md.
set -euo pipefail

FORCE=false
case "${1:-}" in
--force) FORCE=true ;;
"") ;;
*)
	echo "usage: $(basename "$0") [--force]" >&2
	exit 2
	;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
ISTIO_VERSION=$(awk '$1 == "istio.io/istio" { print $2; exit }' "$HERE/go.mod")
[[ -n "$ISTIO_VERSION" ]] || {
	echo "istio.io/istio not found in $HERE/go.mod" >&2
	exit 1
}
CACHE_ROOT=${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set; set SIDECAR_INJECTOR_CACHE}/.cache}/sidecar-injector}
DIR="$CACHE_ROOT/istio-anchor-$ISTIO_VERSION"
BIN="$DIR/istio-anchor"

# What the binary is built from: go.mod, go.sum and the non-test .go files
# of the main package and anchor/ (not anchor/anchortest/ or sidebyside/,
# which only tests use).
src_hash() {
	(cd "$HERE" && find . anchor -maxdepth 1 -name '*.go' ! -name '*_test.go' -print0 | sort -z | xargs -0 cat go.mod go.sum | sha256sum | cut -d' ' -f1)
}

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
if command -v flock >/dev/null 2>&1; then
	if ! flock -n 9; then
		echo "istio-anchor: waiting for another build ($DIR/.lock)" >&2
		flock 9
	fi
fi

want=$(src_hash)
if ! $FORCE && [[ -x "$BIN" && "$(cat "$DIR/.src-sha256" 2>/dev/null)" == "$want" ]]; then
	echo "$BIN"
	exit 0
fi

echo "istio-anchor: building istio.io/istio $ISTIO_VERSION into $BIN (the first build takes minutes)" >&2
tmp=$(mktemp "$DIR/.istio-anchor.XXXXXX")
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
(cd "$HERE" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$tmp" .)
out=$("$tmp" --version 2>&1) || {
	echo "built istio-anchor but --version failed: $out" >&2
	exit 1
}
[[ "$out" == *"$ISTIO_VERSION"* ]] || {
	echo "built istio-anchor but --version does not mention $ISTIO_VERSION: $out" >&2
	exit 1
}
mv -f "$tmp" "$BIN"
echo "$want" >"$DIR/.src-sha256"
echo "istio-anchor: built in $(($(date +%s) - start)) s, $(stat -c %s "$BIN") bytes" >&2
echo "$BIN"
