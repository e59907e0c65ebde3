#!/usr/bin/env bash
# The whole privnet test suite: formatting, lints, unit + simulation + namespace tests, fuzz smoke
# runs. Installs what it needs (cargo-fuzz; Debian packages when run as root). Namespace and
# container tests need root (CAP_NET_ADMIN, /dev/net/tun); run as: sudo scripts/test.sh
#
# Environment: FUZZ_SECONDS (default 30) per fuzz target, FUZZ_JOBS (default: the number of cores)
# targets at once; SKIP_FUZZ=1 to skip fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every step prints the time since the start, so a slow step shows in CI's log.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the namespace and TUN tests need root; run: sudo $0" >&2
    exit 1
fi

step "tools"
# Debian packages of the namespace tests (tests/netns/e2e.sh, policy.sh, expose.sh, routes.sh, directory.sh): ip, ping, iperf3, python3 (stdlib only).
apt_missing=()
# The directory (docs/DIRECTORY.md): etcd for its tests (tests/directory_etcd.rs, tests/netns/directory.sh),
# protoc and the well-known .proto files for building the etcd client (etcd-client's build script).
for tool in ip:iproute2 ping:iputils-ping iperf3:iperf3 python3:python3 etcd:etcd-server protoc:protobuf-compiler; do
    command -v "${tool%%:*}" >/dev/null || apt_missing+=("${tool#*:}")
done
[ -f /usr/include/google/protobuf/descriptor.proto ] || apt_missing+=(libprotobuf-dev)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi

step "cargo deny: advisories (RustSec snapshot, offline), duplicate versions, licences, sources"
# cargo-deny reads the advisory database from $CARGO_HOME/advisory-dbs; this machine (and CI) has no
# network access to it, so the snapshot in ../shared/advisory-db (CI lays a copy of shared/ beside
# the clone) is installed there by ../shared/tools/advisory-db-setup.sh. PRIVNET_SHARED overrides
# where shared/ is.
if ! cargo deny --version >/dev/null 2>&1; then
    cargo install cargo-deny --locked --quiet
fi
shared="${PRIVNET_SHARED:-$(cd .. && pwd)/shared}"
if [ ! -f "$shared/tools/advisory-db-setup.sh" ] || [ ! -d "$shared/advisory-db" ]; then
    echo "scripts/test.sh: no RustSec advisory snapshot at $shared/advisory-db (with" >&2
    echo "  $shared/tools/advisory-db-setup.sh); cargo deny cannot check advisories offline." >&2
    echo "  Put the project's shared/ next to the repository or set PRIVNET_SHARED=/path/to/shared." >&2
    exit 1
fi
# shared/ may come without write bits (as in CI): run the setup script from a writable copy, and
# make an earlier installation removable.
deny_tmp=$(mktemp -d)
cp -r "$shared/tools" "$shared/advisory-db" "$deny_tmp/"
chmod -R u+w "$deny_tmp"
if [ -d "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs" ]; then
    chmod -R u+w "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
fi
bash "$deny_tmp/tools/advisory-db-setup.sh" >/dev/null
rm -rf "$deny_tmp"
cargo fetch --locked --quiet
cargo deny --offline check

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (unit, simulation, namespace tests)"
# As root here, a namespace/TUN test that would skip is a failure instead (crates/privnet-core/tests/support/privileged.rs).
# Likewise a test that needs etcd (crates/privnet-core/tests/support/etcd.rs).
PRIVNET_REQUIRE_PRIVILEGED_TESTS=1 PRIVNET_REQUIRE_ETCD_TESTS=1 cargo test --workspace --all-features

step "end-to-end tests: sidecars in network namespaces (tests/netns/e2e.sh)"
cargo build --release -p privnet-sidecar -p privnet-testapp
tests/netns/e2e.sh # uses target/release/privnet and target/release/privnet-testapp

step "end-to-end tests of the access policy: sidecars in network namespaces (tests/netns/policy.sh)"
tests/netns/policy.sh # the same binaries

step "end-to-end tests of exposures: an outside namespace, sidecars in network namespaces (tests/netns/expose.sh)"
tests/netns/expose.sh # the same binaries
step "end-to-end tests of the directory on etcd: sidecars and etcd in network namespaces (tests/netns/directory.sh)"
tests/netns/directory.sh # the same privnet binary
step "end-to-end tests of routing policies: gateway failover in network namespaces (tests/netns/routes.sh)"
tests/netns/routes.sh # the same sidecar binary

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    jobs="${FUZZ_JOBS:-$(nproc)}"
    step "fuzz smoke runs (${FUZZ_SECONDS:-30} s each, $jobs at a time)"
    (
        cd fuzz
        RUSTC_BOOTSTRAP=1 cargo fuzz build
        # One target's smoke run: its corpus, seeds and dictionary; the log's tail on failure.
        fuzz_one() {
            local target="$1" log seeds=() dict=()
            log=$(mktemp)
            mkdir -p "corpus/$target"
            [ -d "seeds/$target" ] && seeds=("seeds/$target")
            [ -f "dict/$target.dict" ] && dict=("-dict=dict/$target.dict")
            if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
                -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=4096 "${dict[@]}" >"$log" 2>&1; then
                printf -- '--- fuzz %s FAILED (crash, leak, timeout or OOM)\n%s\n' "$target" "$(tail -n 60 "$log")"
                rm -f "$log"
                return 1
            fi
            printf -- '--- fuzz %s: %s\n' "$target" "$(grep -E '^Done' "$log" || echo 'done')"
            rm -f "$log"
        }
        export -f fuzz_one
        export FUZZ_SECONDS
        # libFuzzer uses one core per run: run as many targets at once as there are cores.
        if ! RUSTC_BOOTSTRAP=1 cargo fuzz list | xargs -P "$jobs" -I{} bash -c 'fuzz_one "$1"' _ {}; then
            echo "scripts/test.sh: a fuzz target failed (its log is above)"
            exit 1
        fi
    )
fi

step "container pod test (podman: sidecar image, three pods, two privnet networks)"
scripts/install-podman.sh
export CONTAINERS_CONF=/etc/privnet-ci/containers.conf
PODS_TEST_STAGE=full tests/container/pods.sh

echo
echo "scripts/test.sh: all checks passed"
