#!/usr/bin/env bash
# Build the Kubernetes control plane used by the e2e tests from Go modules
# (no Docker, no release downloads): kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok, kwokctl and helm, at the versions pinned in
# versions.env, into
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/k8s-<hash of versions.env>/bin/
#
# Idempotent: when that directory is complete it only prints its path. A build
# happens in a sibling temp directory that is renamed into place at the end, so
# an interrupted build never leaves a half-filled cache (Go's own build cache
# makes the retry fast).
#
# Usage: install.sh                  build if needed; last line "bin dir: PATH"
#        install.sh --print-bin-dir  print the bin dir only, build nothing
#
# Needs: go >= 1.26 and the Go module proxy (first run only). Builds run under
# `nice -n 15`; GOTOOLCHAIN=local (the installed Go is used, never a download).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster"
HASH="$(sha256sum "$HERE/versions.env" | cut -c1-12)"
DEST="$CACHE_ROOT/k8s-$HASH"
BINS=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl helm)

if [[ "${1:-}" == "--print-bin-dir" ]]; then echo "$DEST/bin"; exit 0; fi
if [[ $# -gt 0 ]]; then echo "usage: $0 [--print-bin-dir]" >&2; exit 64; fi

complete() {
    local b
    for b in "${BINS[@]}"; do [[ -x "$DEST/bin/$b" ]] || return 1; done
}
if complete; then echo "bin dir: $DEST/bin"; exit 0; fi

log() { echo "install.sh: $*" >&2; }
command -v go >/dev/null || { log "ERROR: go not found"; exit 1; }

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
START=$SECONDS
mkdir -p "$CACHE_ROOT"
STAGE="$(mktemp -d "$CACHE_ROOT/.k8s-$HASH.XXXXXX")" # same filesystem: the final mv is a rename
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/src"

STEP=0
step() { STEP=$((STEP + 1)); log "building $1 $2 (step $STEP/${#BINS[@]}, $((SECONDS - START))s elapsed)…"; }
gobuild() { nice -n 15 go build -trimpath "$@"; }

# --- Kubernetes: a wrapper module requiring k8s.io/kubernetes, with every
# staging module (replaced by ./staging/src/... upstream) pinned to v0.X.Y.
KUBE_STAGING="v0.${KUBE_VERSION#v1.}"
KUBE_MINOR="${KUBE_VERSION#v1.}"; KUBE_MINOR="${KUBE_MINOR%%.*}"
log "resolving k8s.io/kubernetes $KUBE_VERSION"
KUBE_GOMOD="$(cd "$STAGE" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[[ -f "$KUBE_GOMOD" ]] || { log "ERROR: could not download k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
mkdir -p "$STAGE/src/kube"
{
    echo "module mcpcluster.local/k8s-build"
    grep -E '^(go|godebug) ' "$KUBE_GOMOD" # same language version and GODEBUG defaults as upstream
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    sed -n "s#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*#replace \1 => \1 $KUBE_STAGING#p" "$KUBE_GOMOD"
} >"$STAGE/src/kube/go.mod"
KUBE_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KUBE_LDFLAGS+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
    KUBE_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for b in kube-apiserver kube-controller-manager kube-scheduler; do
    step "$b" "$KUBE_VERSION"
    (cd "$STAGE/src/kube" && gobuild -ldflags "$KUBE_LDFLAGS" -o "$STAGE/bin/$b" "k8s.io/kubernetes/cmd/$b")
done

# --- etcd: its main package lives in the (unpublished) root module, so a
# two-line main calling etcdmain.Main, exactly what upstream's main.go does.
step etcd "$ETCD_VERSION"
mkdir -p "$STAGE/src/etcd"
cat >"$STAGE/src/etcd/go.mod" <<EOF
module mcpcluster.local/etcd-build
go 1.26.0
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
cat >"$STAGE/src/etcd/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
(cd "$STAGE/src/etcd" && go mod tidy >/dev/null && gobuild -ldflags "-s -w" -o "$STAGE/bin/etcd" .)

# --- kwok, kwokctl, helm: plain `go install module/cmd@version` (their go.mod
# files have no replace directives, so the upstream dependency set is used).
KWOK_LDFLAGS="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION#v}"
for b in kwok kwokctl; do
    step "$b" "$KWOK_VERSION"
    (cd "$STAGE" && GOBIN="$STAGE/bin" GOFLAGS='' nice -n 15 go install -trimpath \
        -ldflags "$KWOK_LDFLAGS" "sigs.k8s.io/kwok/cmd/$b@$KWOK_VERSION")
done
step helm "$HELM_VERSION"
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata="
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do # default .Capabilities.KubeVersion
    HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$KUBE_MINOR"
done
(cd "$STAGE" && GOBIN="$STAGE/bin" GOFLAGS='' nice -n 15 go install -trimpath \
    -ldflags "$HELM_LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")

# --- check that every binary runs and reports the pinned version.
check() { # check BINARY EXPECTED ARGS...
    local out; out="$("$STAGE/bin/$1" "${@:3}" 2>&1 || true)"
    [[ "$out" == *"$2"* ]] || { log "ERROR: '$1 ${*:3}' printed '$out', expected $2"; exit 1; }
}
check kube-apiserver "$KUBE_VERSION" --version
check kube-controller-manager "$KUBE_VERSION" --version
check kube-scheduler "$KUBE_VERSION" --version
check etcd "${ETCD_VERSION#v}" --version
check kwok "${KWOK_VERSION#v}" --version
check kwokctl "${KWOK_VERSION#v}" --version
check helm "$HELM_VERSION" version --short

cp "$HERE/versions.env" "$STAGE/versions.env"
rm -rf "$STAGE/src" "$DEST"
mv "$STAGE" "$DEST"
trap - EXIT
log "built ${#BINS[@]} binaries in $((SECONDS - START))s"
echo "bin dir: $DEST/bin"
