#!/usr/bin/env bash
# Installs / builds everything the test suite needs to run against a real
# kube-apiserver + etcd (controller-runtime envtest) and to use helm, without
# Docker and without downloading release tarballs: only apt and the Go module
# proxy are used.
#
#   test/tools/install.sh                    # everything
#   test/tools/install.sh --only controlplane
#   test/tools/install.sh --only node        # containerd, runc, CNI plugins, kubelet (+ kcm, scheduler)
#   eval "$(test/tools/install.sh --print-env)"
#
# See test/tools/README.md.
set -euo pipefail

# ---------------------------------------------------------------------------
# Versions. The control-plane versions must match the wrapper modules in
# test/tools/controlplane/*/go.mod (checked before building).
# ---------------------------------------------------------------------------
K8S_VERSION=v1.36.3   # k8s.io/kubernetes (kube-apiserver)
ETCD_VERSION=v3.6.8   # go.etcd.io/etcd/server/v3 (etcd the K8S_VERSION release is tested with)
HELM_VERSION=v3.22.0  # helm.sh/helm/v3

# The node tier (test/node): Debian bookworm's containerd (1.6.20), runc
# (1.1.5) and CNI plugins (1.1.1, in /usr/lib/cni), and the kubelet,
# kube-controller-manager and kube-scheduler of K8S_VERSION built in one
# `go build` from test/tools/node (docs/node.md).
NODE_APT_PACKAGES=(containerd runc containernetworking-plugins)
NODE_APT_COMMANDS=(containerd ctr runc)
NODE_APT_FILES=(/usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/portmap /usr/lib/cni/loopback)
NODE_COMMANDS=(kubelet kube-controller-manager kube-scheduler)

APT_PACKAGES=(iptables iproute2)
APT_COMMANDS=(iptables ip6tables iptables-legacy ip6tables-legacy ip)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONTROLPLANE_SRC="$SCRIPT_DIR/controlplane"
NODE_SRC="$SCRIPT_DIR/node"

CACHE_ROOT=${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set; set SIDECAR_INJECTOR_CACHE}/.cache}/sidecar-injector}
CONTROLPLANE_DIR="$CACHE_ROOT/controlplane-k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
BIN_DIR="$CACHE_ROOT/bin"
NODE_DIR="$CACHE_ROOT/node-k8s-$K8S_VERSION"

# ---------------------------------------------------------------------------

usage() {
	cat <<EOF
Usage: $(basename "$0") [--only apt|controlplane|helm|node] [--print-env] [--force]

Installs the tools the test suite needs:
  apt           apt packages ${APT_PACKAGES[*]} (when any of ${APT_COMMANDS[*]} is missing; root only)
  controlplane  kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION, built from source into
                  $CONTROLPLANE_DIR
  helm          helm $HELM_VERSION (go install) into $BIN_DIR/helm
  node          apt packages ${NODE_APT_PACKAGES[*]} (root only), and
                  ${NODE_COMMANDS[*]} $K8S_VERSION built from source (one go build) into
                  $NODE_DIR

Options:
  --only PART   run only one part (apt, controlplane, helm or node)
  --print-env   print only 'export ...' lines for eval (KUBEBUILDER_ASSETS, PATH,
                SIDECAR_INJECTOR_NODE_ASSETS);
                progress and warnings go to stderr
  --force       rebuild / reinstall even if present in the cache
  -h, --help    show this help

Cache root: \$SIDECAR_INJECTOR_CACHE, default \${XDG_CACHE_HOME:-\$HOME/.cache}/sidecar-injector
EOF
}

ONLY=""
PRINT_ENV=false
FORCE=false
while (($#)); do
	case "$1" in
	--only)
		[[ $# -ge 2 ]] || { echo "install.sh: --only needs an argument (apt|controlplane|helm|node)" >&2; exit 2; }
		ONLY=$2
		shift 2
		;;
	--only=*)
		ONLY=${1#--only=}
		shift
		;;
	--print-env) PRINT_ENV=true; shift ;;
	--force) FORCE=true; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
done
case "$ONLY" in
"" | apt | controlplane | helm | node) ;;
*) echo "install.sh: --only must be one of apt, controlplane, helm, node (got '$ONLY')" >&2; exit 2 ;;
esac

want() { [[ -z "$ONLY" || "$ONLY" == "$1" ]]; }
log() { echo "install.sh: $*" >&2; }
die() { echo "install.sh: ERROR: $*" >&2; exit 1; }

# Temporary files/dirs removed on exit (interrupted builds leave nothing behind
# that could be mistaken for a finished binary).
CLEANUP=()
cleanup() {
	local p
	for p in "${CLEANUP[@]+"${CLEANUP[@]}"}"; do rm -rf -- "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command with its output captured; on failure show the tail of it.
run_logged() {
	local what=$1
	shift
	local logf
	logf=$(mktemp "${TMPDIR:-/tmp}/sidecar-injector-install.XXXXXX")
	CLEANUP+=("$logf")
	if ! "$@" >"$logf" 2>&1; then
		echo "install.sh: ERROR: $what failed. Last lines of output:" >&2
		tail -n 40 "$logf" | sed 's/^/    /' >&2
		exit 1
	fi
}

is_executable_file() { [[ -f "$1" && -x "$1" ]]; }

# ---------------------------------------------------------------------------
# apt
# ---------------------------------------------------------------------------

have_command() {
	command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]
}

missing_commands() {
	local c
	for c in "${APT_COMMANDS[@]}"; do
		have_command "$c" || printf '%s ' "$c"
	done
}

install_apt() {
	local missing
	missing=$(missing_commands)
	[[ -z "$missing" ]] && return 0

	if [[ $(id -u) -ne 0 ]]; then
		log "WARNING: missing commands: ${missing% }"
		log "         install them with: sudo apt-get install -y ${APT_PACKAGES[*]}"
		log "         (continuing; tests that need them will fail or skip)"
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "WARNING: missing commands: ${missing% } and apt-get is not available;"
		log "         install the packages providing them (${APT_PACKAGES[*]}) manually (continuing)"
		return 0
	fi

	log "installing apt packages ${APT_PACKAGES[*]} (missing: ${missing% })"
	export DEBIAN_FRONTEND=noninteractive
	run_logged "apt-get update" apt-get update -qq
	run_logged "apt-get install ${APT_PACKAGES[*]}" \
		apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"

	missing=$(missing_commands)
	[[ -z "$missing" ]] || die "still missing after installing ${APT_PACKAGES[*]}: ${missing% }"
}

# ---------------------------------------------------------------------------
# Go builds
# ---------------------------------------------------------------------------

require_go() {
	command -v go >/dev/null 2>&1 ||
		die "'go' is not in PATH; the $1 is built from source with the Go toolchain (see test/tools/README.md)"
}

# Environment for go invocations in the wrapper modules: static binaries,
# ignore any go.work, never modify the committed go.mod/go.sum, no VCS stamping.
go_env() {
	env GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" "$@"
}

# in_dir <dir> <command...>: run a command (or function) in a subshell in <dir>.
in_dir() (
	cd "$1" && shift && "$@"
)

# module_version <wrapper dir> <module path> [replace]
module_version() {
	local fmt='{{.Version}}'
	[[ "${3-}" == replace ]] && fmt='{{with .Replace}}{{.Version}}{{end}}'
	in_dir "$1" go_env go list -m -f "$fmt" "$2"
}

check_wrapper_version() {
	local dir=$1 mod=$2 want_version=$3 kind=${4-} got
	got=$(module_version "$dir" "$mod" "$kind") ||
		die "cannot read the version of $mod from $dir/go.mod"
	[[ "$got" == "$want_version" ]] ||
		die "$dir/go.mod has $mod ${kind:+(replace) }$got but install.sh wants $want_version; update one of them"
}

# build_binary <name> <wrapper dir> <package> <expected version substring> [go build flags...]
# Builds into a temporary file next to the destination, checks --version, then
# renames it into place atomically.
build_binary() {
	local name=$1 dir=$2 pkg=$3 expect=$4
	shift 4
	local dest="$CONTROLPLANE_DIR/$name"
	local tmp="$CONTROLPLANE_DIR/.$name.tmp.$$"
	CLEANUP+=("$tmp")

	log "building $name $expect in ${dir#"$SCRIPT_DIR"/} (several minutes with a cold Go build cache)..."
	local start=$SECONDS
	run_logged "building $name" in_dir "$dir" go_env go build -trimpath "$@" -o "$tmp" "$pkg"

	local out
	out=$("$tmp" --version 2>&1) || die "built $name but '$name --version' failed: $out"
	[[ "$out" == *"$expect"* ]] || die "built $name but '$name --version' does not mention $expect: $out"
	mv -f "$tmp" "$dest"
	log "built $name in $((SECONDS - start))s"
}

# k8s_ldflags: version ldflags like upstream's hack/lib/version.sh, so
# `<command> --version` prints "Kubernetes $K8S_VERSION".
k8s_ldflags() {
	local major minor rest
	IFS=. read -r major minor rest <<<"${K8S_VERSION#v}"
	local ldflags="-s -w" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	done
	printf '%s' "$ldflags"
}

install_controlplane() {
	local ka="$CONTROLPLANE_DIR/kube-apiserver" etcd="$CONTROLPLANE_DIR/etcd"
	if ! $FORCE && is_executable_file "$ka" && is_executable_file "$etcd"; then
		return 0
	fi
	require_go "control plane"
	mkdir -p "$CONTROLPLANE_DIR"
	# Leftovers of killed runs (never used: only complete, verified builds are
	# renamed to their final names). Only safe to remove while holding the lock.
	if $LOCKED; then
		rm -f "$CONTROLPLANE_DIR"/.kube-apiserver.tmp.* "$CONTROLPLANE_DIR"/.etcd.tmp.*
	fi

	local ka_src="$CONTROLPLANE_SRC/kube-apiserver" etcd_src="$CONTROLPLANE_SRC/etcd"

	if $FORCE || ! is_executable_file "$ka"; then
		check_wrapper_version "$ka_src" k8s.io/kubernetes "$K8S_VERSION"
		# Staging modules are released as v0.<minor>.<patch> alongside v1.<minor>.<patch>.
		check_wrapper_version "$ka_src" k8s.io/apiserver "v0.${K8S_VERSION#v1.}" replace
		build_binary kube-apiserver "$ka_src" k8s.io/kubernetes/cmd/kube-apiserver \
			"$K8S_VERSION" -ldflags "$(k8s_ldflags)"
	fi

	if $FORCE || ! is_executable_file "$etcd"; then
		check_wrapper_version "$etcd_src" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
		build_binary etcd "$etcd_src" . "${ETCD_VERSION#v}" -ldflags "-s -w"
	fi
}

# ---------------------------------------------------------------------------
# helm
# ---------------------------------------------------------------------------

helm_version() {
	"$1" version --template '{{.Version}}' 2>/dev/null
}

install_helm() {
	local helm="$BIN_DIR/helm"
	if ! $FORCE && is_executable_file "$helm" && [[ "$(helm_version "$helm" || true)" == "$HELM_VERSION" ]]; then
		return 0
	fi
	require_go "helm CLI"
	mkdir -p "$BIN_DIR"
	if $LOCKED; then
		rm -rf "$BIN_DIR"/.helm-install.*
	fi

	log "installing helm $HELM_VERSION (go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION)..."
	local start=$SECONDS

	# Run outside of any module so the project's go.mod / go.work is irrelevant.
	local work
	work=$(mktemp -d "$BIN_DIR/.helm-install.XXXXXX")
	CLEANUP+=("$work")

	# Like helm's Makefile: stamp the version and derive the default
	# Kubernetes version (.Capabilities.KubeVersion for helm template) from the
	# k8s.io/client-go version helm is built with (v0.X.Y -> v1.X).
	local gomod client_go
	gomod=$(in_dir "$work" env GOWORK=off GOFLAGS= go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p') ||
		die "go mod download helm.sh/helm/v3@$HELM_VERSION failed"
	[[ -f "$gomod" ]] || die "cannot find the go.mod of helm.sh/helm/v3@$HELM_VERSION"
	client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
	[[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || die "cannot determine the k8s.io/client-go version helm $HELM_VERSION uses"
	local k8s_minor=${BASH_REMATCH[1]}

	local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
	ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
	ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"

	# (no -mod flag here: it does not apply to "go install pkg@version")
	run_logged "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
		in_dir "$work" env GOWORK=off CGO_ENABLED=0 GOFLAGS="-buildvcs=false" GOBIN="$work" \
		go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

	local got
	got=$(helm_version "$work/helm") || die "installed helm but 'helm version' failed"
	[[ "$got" == "$HELM_VERSION" ]] || die "installed helm reports version '$got', expected $HELM_VERSION"
	mv -f "$work/helm" "$helm"
	log "installed helm in $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------
# node: containerd, runc, CNI plugins (apt) and the kubelet & co (built)
# ---------------------------------------------------------------------------

missing_node_prerequisites() {
	local c f
	for c in "${NODE_APT_COMMANDS[@]}"; do
		have_command "$c" || printf '%s ' "$c"
	done
	for f in "${NODE_APT_FILES[@]}"; do
		[[ -x "$f" ]] || printf '%s ' "$f"
	done
}

install_node_apt() {
	local missing
	missing=$(missing_node_prerequisites)
	[[ -z "$missing" ]] && return 0
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "WARNING: missing for the node tier: ${missing% }"
		log "         install them as root with: apt-get install -y ${NODE_APT_PACKAGES[*]}"
		log "         (continuing; the node tier skips, or fails when CI is set)"
		return 0
	fi
	log "installing apt packages ${NODE_APT_PACKAGES[*]} (missing: ${missing% })"
	export DEBIAN_FRONTEND=noninteractive
	run_logged "apt-get update" apt-get update -qq
	# --no-install-recommends: no Docker-style extras; containerd is started
	# by the node tier itself with its own configuration, never as a service.
	run_logged "apt-get install ${NODE_APT_PACKAGES[*]}" \
		apt-get install -y -qq --no-install-recommends "${NODE_APT_PACKAGES[@]}"
	missing=$(missing_node_prerequisites)
	[[ -z "$missing" ]] || die "still missing after installing ${NODE_APT_PACKAGES[*]}: ${missing% }"
}

install_node() {
	install_node_apt
	local c need=false
	for c in "${NODE_COMMANDS[@]}"; do
		is_executable_file "$NODE_DIR/$c" || need=true
	done
	$FORCE && need=true
	$need || return 0

	require_go "node tier"
	mkdir -p "$NODE_DIR"
	if $LOCKED; then
		rm -rf "$NODE_DIR"/.build.*
	fi
	check_wrapper_version "$NODE_SRC" k8s.io/kubernetes "$K8S_VERSION"
	check_wrapper_version "$NODE_SRC" k8s.io/kubelet "v0.${K8S_VERSION#v1.}" replace

	# One go build for every command: one module graph, and the packages
	# they share (and share with kube-apiserver) are compiled once.
	local tmp pkgs=()
	tmp=$(mktemp -d "$NODE_DIR/.build.XXXXXX")
	CLEANUP+=("$tmp")
	for c in "${NODE_COMMANDS[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/$c")
	done
	log "building ${NODE_COMMANDS[*]} $K8S_VERSION in ${NODE_SRC#"$SCRIPT_DIR"/} (one go build; several minutes with a cold Go build cache)..."
	local start=$SECONDS
	run_logged "building ${NODE_COMMANDS[*]}" in_dir "$NODE_SRC" go_env go build -trimpath -ldflags "$(k8s_ldflags)" -o "$tmp/" "${pkgs[@]}"
	local out
	for c in "${NODE_COMMANDS[@]}"; do
		out=$("$tmp/$c" --version 2>&1) || die "built $c but '$c --version' failed: $out"
		[[ "$out" == *"$K8S_VERSION"* ]] || die "built $c but '$c --version' does not mention $K8S_VERSION: $out"
	done
	for c in "${NODE_COMMANDS[@]}"; do
		mv -f "$tmp/$c" "$NODE_DIR/$c"
	done
	log "built ${NODE_COMMANDS[*]} in $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------

LOCKED=false
if want controlplane || want helm || want node; then
	mkdir -p "$CACHE_ROOT"
	# Serialise concurrent runs (e.g. several test jobs on one machine).
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$CACHE_ROOT/.install.lock"
		if ! flock -n 9; then
			log "waiting for another install.sh run to finish (lock $CACHE_ROOT/.install.lock)..."
			flock 9
		fi
		LOCKED=true
	fi
fi

want apt && install_apt
want controlplane && install_controlplane
want helm && install_helm
want node && install_node

if $PRINT_ENV; then
	if want controlplane; then
		printf 'export KUBEBUILDER_ASSETS=%q\n' "$CONTROLPLANE_DIR"
	fi
	if want helm; then
		printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
	fi
	if want node; then
		printf 'export SIDECAR_INJECTOR_NODE_ASSETS=%q\n' "$NODE_DIR"
	fi
else
	if want controlplane; then
		echo "kube-apiserver: $CONTROLPLANE_DIR/kube-apiserver"
		echo "etcd: $CONTROLPLANE_DIR/etcd"
		echo "KUBEBUILDER_ASSETS=$CONTROLPLANE_DIR"
	fi
	if want helm; then
		echo "helm: $BIN_DIR/helm"
	fi
	if want node; then
		for c in "${NODE_COMMANDS[@]}"; do
			echo "$c: $NODE_DIR/$c"
		done
		echo "SIDECAR_INJECTOR_NODE_ASSETS=$NODE_DIR"
	fi
fi
