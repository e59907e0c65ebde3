#!/usr/bin/env bash
# Build the static privnet binaries on the host and the FROM-scratch images with podman or docker, whichever
# exists (podman preferred; docker only if its engine answers). Prints each image's size.
#
# Usage: scripts/build-image.sh [sidecar|testapp|all]        (default: all)
# Environment:
#   PRIVNET_IMAGE   sidecar image tag      (default localhost/privnet:dev)
#   TESTAPP_IMAGE   test-app image tag     (default localhost/privnet-testapp:dev)
#   ENGINE          podman | docker        (default: detected)
#   PODMAN_RUNTIME  OCI runtime for podman (default runc: crun refuses the cgroup layout on the CI machines)
#   SKIP_CARGO=1    reuse already-built binaries
#   CARGO_LOCKED=1  pass --locked to cargo (CI)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WHAT="${1:-all}"
TARGET=x86_64-unknown-linux-gnu
PRIVNET_IMAGE="${PRIVNET_IMAGE:-localhost/privnet:dev}"
TESTAPP_IMAGE="${TESTAPP_IMAGE:-localhost/privnet-testapp:dev}"
BIN_DIR="target/$TARGET/release"

case "$WHAT" in
    sidecar) packages=(-p privnet-sidecar) ;;
    testapp) packages=(-p privnet-testapp) ;;
    all) packages=(-p privnet-sidecar -p privnet-testapp) ;;
    *)
        echo "usage: $0 [sidecar|testapp|all]" >&2
        exit 2
        ;;
esac

# --- container engine ------------------------------------------------------------------------------------
if [[ -z "${ENGINE:-}" ]]; then
    if command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    elif command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
        ENGINE=docker
    else
        echo "build-image.sh: neither podman nor a working docker engine found" >&2
        echo "  (install podman with scripts/install-podman.sh)" >&2
        exit 1
    fi
fi
case "$ENGINE" in
    podman)
        if [[ -z "${CONTAINERS_CONF:-}" && -f /etc/privnet-ci/containers.conf ]]; then
            export CONTAINERS_CONF=/etc/privnet-ci/containers.conf
        fi
        engine=(podman --runtime "${PODMAN_RUNTIME:-runc}")
        ;;
    docker) engine=(docker) ;;
    *)
        echo "build-image.sh: unknown ENGINE=$ENGINE" >&2
        exit 2
        ;;
esac

# --- static binaries -------------------------------------------------------------------------------------
# --target keeps RUSTFLAGS away from build scripts and proc macros (they must stay dynamic host binaries).
# No debug info and stripped symbols: the release profile's debug = 1 would triple the image size.
if [[ "${SKIP_CARGO:-0}" != 1 ]]; then
    RUSTFLAGS='-C target-feature=+crt-static' \
        CARGO_PROFILE_RELEASE_DEBUG=0 \
        CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release ${CARGO_LOCKED:+--locked} "${packages[@]}" --target "$TARGET"
fi

check_static() {
    local bin="$1"
    if [[ ! -x "$bin" ]]; then
        echo "build-image.sh: $bin missing (build it, or unset SKIP_CARGO)" >&2
        exit 1
    fi
    # A dynamically linked executable has a PT_INTERP program header (the dynamic loader).
    if readelf -l "$bin" | grep -q 'INTERP'; then
        echo "build-image.sh: $bin is not statically linked" >&2
        exit 1
    fi
    echo "build-image.sh: $bin is static, $(stat -c %s "$bin") bytes"
}

image_size() {
    local image="$1" bytes
    bytes="$("${engine[@]}" image inspect --format '{{.Size}}' "$image")"
    awk -v b="$bytes" -v i="$image" 'BEGIN { printf "image %s size: %d bytes (%.2f MB)\n", i, b, b / 1000000 }'
}

build() {
    local file="$1" image="$2"
    local pull=()
    # FROM scratch needs no pull; make sure podman never tries a registry.
    # --layers=false: no intermediate images left behind (one layer on top of scratch).
    [[ "$ENGINE" == podman ]] && pull=(--pull=never --layers=false)
    "${engine[@]}" build "${pull[@]}" -f "$file" -t "$image" .
    image_size "$image"
}

if [[ "$WHAT" == sidecar || "$WHAT" == all ]]; then
    check_static "$BIN_DIR/privnet"
    build Containerfile "$PRIVNET_IMAGE"
fi
if [[ "$WHAT" == testapp || "$WHAT" == all ]]; then
    check_static "$BIN_DIR/privnet-testapp"
    build crates/privnet-testapp/Containerfile "$TESTAPP_IMAGE"
fi
