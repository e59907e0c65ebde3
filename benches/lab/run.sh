#!/usr/bin/env bash
# benches/lab/run.sh — the privnet namespace lab, one command (root):
#
#   sudo benches/lab/run.sh
#
# 1. installs what it needs (apt, --no-install-recommends; boringtun-cli via cargo if missing),
# 2. builds privnet (release) and copies the binary to a private temp dir (target/ may be rebuilt
#    while the lab runs; the lab only ever uses the copy),
# 3. runs REPS rounds; each round runs every system once, in order (interleaved, so drift of the shared
#    machine hits every system alike): two namespaces joined by a veth, one daemon per side, ping and
#    iperf3 through the overlay (see lib.sh),
# 4. measures the one-core ChaCha20-Poly1305 ceiling with openssl, pinned to CPU $PIN_CPU,
# 5. writes results/results.md and results/results.json (and raw data in results/raw/).
#
# Environment: REPS=3, SYSTEMS="baseline wireguard-go boringtun nebula privnet privnet-chacha privnet-userspace
# onetun", SKIP_INSTALL=1,
# SKIP_BUILD=1 (use target/release/privnet as it is), SKIP_CRYPTO=1, RUN_TIMEOUT=300 (s per system run),
# RESULTS=benches/lab/results, plus the test knobs of lib.sh (TCP_SECS, UDP_SECS, PING_COUNT, ...).
set -euo pipefail

LAB_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$LAB_DIR/../.." && pwd)
REPS=${REPS:-3}
SYSTEMS=${SYSTEMS:-"baseline wireguard-go boringtun nebula privnet privnet-chacha privnet-userspace onetun"}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
PIN_CPU=${PIN_CPU:-1}
export RESULTS=${RESULTS:-$LAB_DIR/results}
export PATH="$PATH:$HOME/.cargo/bin"

die() { echo "run.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, TUN devices)"
[[ -c /dev/net/tun ]] || die "/dev/net/tun is missing"
for s in $SYSTEMS; do [[ -x $LAB_DIR/systems/$s.sh ]] || die "no systems/$s.sh"; done

# ---- 1. dependencies -------------------------------------------------------------------------------
if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  need=()
  for pair in iperf3:iperf3 nebula:nebula wireguard-go:wireguard-go wg:wireguard-tools jq:jq ip:iproute2 \
              ping:iputils-ping openssl:openssl taskset:util-linux python3:python3; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
  if ((${#need[@]})); then
    echo "run.sh: apt-get install ${need[*]}" >&2
    apt-get update -qq
    # --no-install-recommends: wireguard-tools would otherwise pull in a kernel image
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
  if [[ " $SYSTEMS " == *" boringtun "* ]] && ! command -v boringtun-cli >/dev/null; then
    cargo install boringtun-cli
  fi
  if [[ " $SYSTEMS " == *" onetun "* ]] && ! command -v onetun >/dev/null; then
    cargo install onetun --locked
  fi
fi
for t in iperf3 jq ip ping python3; do command -v "$t" >/dev/null || die "missing $t"; done

# ---- 2. privnet binary -----------------------------------------------------------------------------
BIN_DIR=$(mktemp -d /tmp/privnet-lab-bin.XXXXXX)
trap 'rm -rf "$BIN_DIR"' EXIT
if [[ " $SYSTEMS " == *" privnet"* ]]; then
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$REPO" && cargo build --release -p privnet-sidecar --bin privnet) || die "cargo build failed"
  fi
  [[ -x $REPO/target/release/privnet ]] || die "no target/release/privnet"
  cp "$REPO/target/release/privnet" "$BIN_DIR/privnet"
  export PRIVNET_BIN=$BIN_DIR/privnet
  rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$REPO" diff --quiet HEAD -- crates/privnet-core crates/privnet-sidecar 2>/dev/null || rev="$rev+uncommitted changes"
  export PRIVNET_REV="$rev, binary built $(date -r "$BIN_DIR/privnet" -Is)"
fi

# ---- 3. the rounds ---------------------------------------------------------------------------------
mkdir -p "$RESULTS"
rm -rf "$RESULTS/raw" "$RESULTS/results.md" "$RESULTS/results.json" "$RESULTS/crypto.txt" "$RESULTS/retries.txt"
: >"$RESULTS/failures.txt"
ver() { "$@" 2>/dev/null | head -1 || true; }
jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg kernel "$(uname -r)" \
  --arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" --argjson nproc "$(nproc)" \
  --arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" --argjson reps "$REPS" --arg systems "$SYSTEMS" \
  --arg command "$( [[ $REPS != 3 ]] && echo "REPS=$REPS ")sudo benches/lab/run.sh" \
  --arg privnet_rev "${PRIVNET_REV:-}" \
  --arg iperf3 "$(ver iperf3 --version)" --arg wireguard_go "$(ver wireguard-go --version)" \
  --arg boringtun "$(ver boringtun-cli --version)" --arg nebula "$(ver nebula -version)" \
  --arg onetun "$(ver onetun --version)" \
  --arg openssl "$(ver openssl version)" \
  '$ARGS.named' >"$RESULTS/machine.json"

started=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  for s in $SYSTEMS; do
    # one retry, in place: a daemon killed by someone else on a shared machine should not cost a rep
    for try in 1 2; do
      if REP=$rep timeout -k 30 "$RUN_TIMEOUT" "$LAB_DIR/systems/$s.sh"; then
        ((try == 1)) || echo "$s rep$rep: first attempt failed, retry succeeded" >>"$RESULTS/retries.txt"
        break
      fi
      ((try == 2)) && echo "$s rep$rep failed twice" | tee -a "$RESULTS/failures.txt" >&2
      sleep 2
    done
    sleep 2
  done
done
echo "run.sh: rounds took $(( $(date +%s) - started )) s" >&2

# ---- 4. crypto ceiling -----------------------------------------------------------------------------
if [[ ${SKIP_CRYPTO:-0} != 1 ]] && command -v openssl >/dev/null; then
  for bytes in 1420 16384; do
    taskset -c "$PIN_CPU" openssl speed -evp chacha20-poly1305 -bytes "$bytes" -seconds 3 2>/dev/null \
      | awk -v b="$bytes" '/^ChaCha20-Poly1305|^chacha20-poly1305/ {v = $NF; sub(/k$/, "", v);
          printf "openssl chacha20-poly1305, one core (CPU '"$PIN_CPU"'), %d B: %.2f Gbit/s\n", b, v * 1000 * 8 / 1e9}'
  done >"$RESULTS/crypto.txt"
fi

# ---- 5. tables -------------------------------------------------------------------------------------
python3 "$LAB_DIR/summarize.py" "$RESULTS" $SYSTEMS
[[ -s $RESULTS/crypto.txt ]] && { echo; cat "$RESULTS/crypto.txt"; }
[[ ! -s $RESULTS/failures.txt ]]
