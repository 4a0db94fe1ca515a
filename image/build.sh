#!/usr/bin/env bash
# Build the mcp-node image for CI from a locally built binary, with buildah and no container
# engine and no registry: FROM scratch, the binary, exactly the shared libraries `ldd` says it
# loads (plus the dynamic loader), /etc/passwd and /etc/group with the non-root user 65532, and
# the host's CA bundle. Then check the image: run its entrypoint with `--version` inside the
# image's root filesystem (buildah run --isolation chroot, or a plain chroot into the mounted
# image when that is not possible here) and expect "mcp-node <version>".
#
# Usage: image/build.sh [BINARY] [--tag NAME:TAG] [--oci-archive FILE]
#   BINARY          default target/release/mcp-node, else target/debug/mcp-node
#   --tag           default localhost/mcp-node:<workspace version>
#   --oci-archive   also write the image as an OCI archive (e.g. for `kind load image-archive`)
#
# Storage: buildah --storage-driver vfs (no overlay or fuse needed) under
# MCPCLUSTER_IMAGE_ROOT (default ~/.cache/mcpcluster/containers). Installs buildah with
# apt-get when it is missing (as root). Users with Docker or Podman use image/Containerfile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "image/build.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

BIN="" TAG="" ARCHIVE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
        --oci-archive) ARCHIVE="${2:?--oci-archive needs a file}"; shift 2 ;;
        -h|--help) sed -n '9,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) [[ -z "$BIN" ]] || die "one BINARY only"; BIN="$1"; shift ;;
    esac
done
if [[ -z "$BIN" ]]; then
    for b in "$ROOT/target/release/mcp-node" "$ROOT/target/debug/mcp-node"; do
        [[ -x "$b" ]] && { BIN="$b"; break; }
    done
    [[ -n "$BIN" ]] || die "no target/release/mcp-node or target/debug/mcp-node; build one (cargo build -p mcp-node) or pass its path"
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable file"
BIN="$(realpath "$BIN")"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
[[ -n "$VERSION" ]] || die "no [workspace.package] version in Cargo.toml"
TAG="${TAG:-localhost/mcp-node:$VERSION}"

# The binary must be the one it claims to be before it goes into an image.
HOST_VERSION="$("$BIN" --version 2>&1)" || die "'$BIN --version' failed: $HOST_VERSION"
[[ "$HOST_VERSION" == "mcp-node $VERSION" ]] ||
    die "'$BIN --version' printed '$HOST_VERSION', expected 'mcp-node $VERSION' (stale binary?)"

if ! command -v buildah >/dev/null; then
    [[ "$(id -u)" == 0 ]] || die "buildah is missing; install it (apt-get install buildah) or run as root"
    log "installing buildah (apt-get)…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq buildah >&2 || die "apt-get install buildah failed"
fi
STORAGE_ROOT="${MCPCLUSTER_IMAGE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/containers}"
B=(buildah --storage-driver vfs --root "$STORAGE_ROOT/storage" --runroot "$STORAGE_ROOT/run")
mkdir -p "$STORAGE_ROOT"

# --- the root filesystem: binary, its libraries, users.
ROOTFS="$(mktemp -d)"
CTR=""
cleanup() {
    [[ -n "$CTR" ]] && "${B[@]}" rm "$CTR" >/dev/null 2>&1 || true
    rm -rf "$ROOTFS"
}
trap cleanup EXIT

install -D -m 0755 "$BIN" "$ROOTFS/usr/local/bin/mcp-node"
# ldd lines: "libx.so.6 => /lib/.../libx.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
# "linux-vdso.so.1 (0x...)" (in the kernel, nothing to copy), or "not a dynamic executable".
LIBS=()
if LDD_OUT="$(ldd "$BIN" 2>&1)"; then
    while read -r lib; do LIBS+=("$lib"); done < <(
        awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$LDD_OUT" | sort -u)
    grep -q "not found" <<<"$LDD_OUT" && die "ldd cannot resolve a library of $BIN: $LDD_OUT"
else
    [[ "$LDD_OUT" == *"not a dynamic executable"* || "$LDD_OUT" == *"statically linked"* ]] ||
        die "ldd $BIN failed: $LDD_OUT"
    log "$BIN is statically linked: no libraries to copy"
fi
for lib in "${LIBS[@]}"; do
    # Keep the path the binary asks for (the loader's path is baked into the ELF header); copy
    # the file it resolves to.
    install -D -m 0755 "$(realpath "$lib")" "$ROOTFS$lib"
done
mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ROOTFS/etc/group"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then # for HTTP tools that call TLS upstreams
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
log "rootfs: mcp-node + ${#LIBS[@]} librar$( ((${#LIBS[@]} == 1)) && echo y || echo ies) ($(du -sh "$ROOTFS" | cut -f1)): ${LIBS[*]:-none}"

# --- the image.
CTR="$("${B[@]}" from --name "mcp-node-build-$$" scratch)"
"${B[@]}" copy "$CTR" "$ROOTFS/" / >/dev/null
"${B[@]}" config \
    --entrypoint '["/usr/local/bin/mcp-node"]' \
    --user 65532:65532 \
    --workingdir / \
    --env PATH=/usr/local/bin \
    --port 8080/tcp --port 9090/tcp \
    --label org.opencontainers.image.title=mcp-node \
    --label "org.opencontainers.image.version=$VERSION" \
    --label org.opencontainers.image.description="MCP server node of mcpcluster" \
    "$CTR"
OLD_ID="$("${B[@]}" images --quiet --no-trunc "$TAG" 2>/dev/null | head -1 || true)"
IMAGE_ID="$("${B[@]}" commit --quiet --rm "$CTR" "$TAG")"
CTR=""
log "committed $TAG ($IMAGE_ID)"
# vfs stores every layer in full: drop the image this tag named before (a rebuild's leftover).
if [[ -n "$OLD_ID" && "$OLD_ID" != *"${IMAGE_ID#sha256:}"* ]]; then
    "${B[@]}" rmi "$OLD_ID" >/dev/null 2>&1 || true
fi

# --- the check: the image's own entrypoint, in the image's own root filesystem, as its user.
CTR="$("${B[@]}" from --name "mcp-node-check-$$" "$TAG")"
if OUT="$("${B[@]}" run --isolation chroot --user 65532:65532 "$CTR" -- /usr/local/bin/mcp-node --version 2>&1)"; then
    HOW="buildah run --isolation chroot"
else
    log "buildah run --isolation chroot is not possible here ($(tail -1 <<<"$OUT")); using chroot into the mounted image"
    MNT="$("${B[@]}" mount "$CTR")"
    OUT="$(chroot --userspec=65532:65532 "$MNT" /usr/local/bin/mcp-node --version 2>&1)" || die "the image's mcp-node --version failed: $OUT"
    "${B[@]}" umount "$CTR" >/dev/null
    HOW="chroot into the mounted image"
fi
[[ "$OUT" == "mcp-node $VERSION" ]] || die "the image's mcp-node --version printed '$OUT', expected 'mcp-node $VERSION'"
log "check ($HOW, uid 65532): $OUT"

if [[ -n "$ARCHIVE" ]]; then
    rm -f "$ARCHIVE"
    "${B[@]}" push --quiet "$TAG" "oci-archive:$ARCHIVE:$TAG"
    log "wrote $ARCHIVE"
fi
echo "image: $TAG $IMAGE_ID ($("${B[@]}" images --noheading --format '{{.Size}}' "$TAG"))"
