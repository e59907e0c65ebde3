#!/usr/bin/env bash
# benches/lab/noisy.sh — the noisy-neighbour benchmark: three privnet members (flood source F,
# victim V, shared target T) in three namespaces on one bridge. For each setting of `[tun]
# fairness` (on, off) and each repetition, the victim's ping p99 and TCP throughput to the target are
# measured alone, then while F floods T at full speed (iperf3 UDP -b 0, or FLOOD=tcp: -P 4 TCP).
#
#   sudo PRIVNET_BIN=/tmp/privnet benches/lab/noisy.sh            # 2 repetitions x (on, off)
#   sudo PRIVNET_BIN=/tmp/privnet REPS=3 FAIRNESS="true false" FLOOD=tcp benches/lab/noisy.sh
#   sudo PRIVNET_BIN=/tmp/privnet PIN=1 benches/lab/noisy.sh   # the target is the bottleneck
#   sudo PRIVNET_BIN=/tmp/privnet PIN=1 VICTIM_RATE=1G benches/lab/noisy.sh   # a victim needing 1 Gbit/s
#
# PIN=1 (needs 2+ CPUs) pins the target's daemon and its two iperf3 servers to CPU 1 and the flood
# source's daemon and iperf3 client to CPU 0 (the victim is not pinned): the target's daemon then has
# about half a core against a flood source with a whole one, so the shared stage, the target's
# receive path, is the bottleneck (the case fairness is for: a receiver or a gateway that several
# members send to). Unpinned, on a small machine, the cores themselves are the shared resource.
# DAEMON_NICE=-10 runs the three daemons at that nice value (the operator's lever for members
# whose data path shares its cores with busy applications: they then wait less for the CPU).
# Underlay: namespace nn-t holds bridge br0 (10.198.0.3/24) with one veth to nn-f (10.198.0.1) and
# one to nn-v (10.198.0.2), MTU 1500. Overlay 100.71.0.1 (F), .2 (V), .3 (T), TUN MTU 1440. Every
# namespace is made fresh per run and deleted afterwards (also on error, by the exit trap).
# Results: one line per run on stdout and in $RESULTS/noisy/results.tsv, raw files beside it.
# Only ratios within one run mean anything: the daemons, iperf3 and the kernel share the cores.
set -euo pipefail

[[ ${SYSTEM:-privnet} != privnet ]] || : "${PRIVNET_BIN:?set PRIVNET_BIN to a private copy of the privnet binary}"
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${RESULTS:=$LAB_DIR/results}" "${REPS:=2}" "${FAIRNESS:=true false}" "${FLOOD:=udp}"
# SYSTEM=wireguard-go: the same three members as Debian's `wireguard-go -f` (configured with `wg
# set`), the anchor overlay; FAIRNESS is then ignored (one setting, shown as `-`).
: "${SYSTEM:=privnet}"
: "${PING_COUNT:=500}" "${PING_INTERVAL:=0.01}" "${TCP_SECS:=8}" "${OV_MTU:=1440}"
OUT="$RESULTS/noisy"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/privnet-noisy.XXXXXX)
NS=(nn-f nn-v nn-t)
UL=(10.198.0.1 10.198.0.2 10.198.0.3)
OV=(100.71.0.1 100.71.0.2 100.71.0.3)
NAMES=(f v t)
PIDS=()
PIN_TAG=""
if [[ ${PIN:-0} == 1 ]]; then PIN_TAG="+pin"; fi
if [[ -n ${VICTIM_RATE:-} ]]; then PIN_TAG="$PIN_TAG+v$VICTIM_RATE"; fi

say() { printf '[%s] noisy: %s\n' "$(date +%T)" "$*" >&2; }
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

kill_ours() {
  local p i left
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 30); do
    left=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && left=1; done
    ((left)) || return 0
    sleep 0.1
  done
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
}

netns_down() {
  local n
  for n in "${NS[@]}"; do
    ip netns list | awk '{print $1}' | grep -qx "$n" && ip netns del "$n"
  done
  return 0
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  ((${#PIDS[@]})) && kill_ours "${PIDS[@]}"
  netns_down
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT INT TERM

netns_up() {
  netns_down
  local n
  for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
  ip -n nn-t link add br0 type bridge
  ip -n nn-t link set br0 mtu 1500 up
  ip -n nn-t addr add "${UL[2]}/24" dev br0
  for i in 0 1; do
    ip link add "veth-${NAMES[$i]}" netns "${NS[$i]}" type veth peer name "port-${NAMES[$i]}" netns nn-t
    ip -n "${NS[$i]}" addr add "${UL[$i]}/24" dev "veth-${NAMES[$i]}"
    ip -n "${NS[$i]}" link set "veth-${NAMES[$i]}" mtu 1500 up
    ip -n nn-t link set "port-${NAMES[$i]}" master br0 mtu 1500 up
  done
  for i in $(seq 50); do
    in_ns nn-f ping -n -q -c1 -W 0.2 "${UL[1]}" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  say "underlay does not answer"; return 1
}

# The taskset prefix of member INDEX's processes under PIN=1 (flood source: CPU 0, target: CPU 1).
pin_of() {
  [[ ${PIN:-0} == 1 ]] || return 0
  case $1 in 0) echo "taskset -c 0" ;; 2) echo "taskset -c 1" ;; esac
}

member_toml() {  # member_toml INDEX FAIRNESS
  local i=$1 j
  cat <<TOML
[node]
network = "noisy"
private_key = "$WORK/${NAMES[$i]}/private.key"
certificate = "$WORK/${NAMES[$i]}/member.crt"
ca_certificates = ["$WORK/ca/ca.crt"]
network_psk = "$WORK/ca/network.psk"
listen = "${UL[$i]}:51820"

[tun]
mode = "tun"
name = "pvn-${NAMES[$i]}"
mtu = $OV_MTU
underlay_mtu = 1500
fairness = $2

[status]
socket = "$WORK/${NAMES[$i]}/status.sock"

[log]
level = "${NOISY_LOG:-warn}"
format = "text"
TOML
  for j in 0 1 2; do
    ((j == i)) && continue
    cat <<TOML

[[peer]]
name = "${NAMES[$j]}"
public_key = "$(cat "$WORK/${NAMES[$j]}/private.key.pub")"
addresses = ["${OV[$j]}/32"]
endpoint = "${UL[$j]}:51820"
TOML
  done
}

prepare() {
  if [[ $SYSTEM == wireguard-go ]]; then
    local i
    umask 077
    for i in 0 1 2; do
      mkdir -p "$WORK/${NAMES[$i]}"
      wg genkey >"$WORK/${NAMES[$i]}/wg.key"
      wg pubkey <"$WORK/${NAMES[$i]}/wg.key" >"$WORK/${NAMES[$i]}/wg.pub"
    done
    return 0
  fi
  "$PRIVNET_BIN" ca init --name noisy --prefix 100.71.0.0/24 --out-dir "$WORK/ca" >/dev/null
  local i
  for i in 0 1 2; do
    mkdir -p "$WORK/${NAMES[$i]}"
    "$PRIVNET_BIN" keygen --out "$WORK/${NAMES[$i]}/private.key" >/dev/null 2>&1
    "$PRIVNET_BIN" cert issue --ca-dir "$WORK/ca" --name "${NAMES[$i]}" --address "${OV[$i]}" \
      --public-key "$WORK/${NAMES[$i]}/private.key.pub" --out "$WORK/${NAMES[$i]}/member.crt" >/dev/null
  done
}

# wireguard-go members: UAPI sockets live in the host's /var/run/wireguard, so each device has its
# own name (nnwg-f, nnwg-v, nnwg-t).
start_wg_members() {
  local i j dev
  PIDS=()
  for i in 0 1 2; do
    dev="nnwg-${NAMES[$i]}"
    ip netns exec "${NS[$i]}" $(pin_of "$i") env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$dev" >"$WORK/daemon-${NAMES[$i]}.log" 2>&1 &
    PIDS+=($!)
    local k
    for k in $(seq 300); do [[ -e /var/run/wireguard/$dev.sock ]] && break; sleep 0.01; done
    ip netns exec "${NS[$i]}" wg set "$dev" private-key "$WORK/${NAMES[$i]}/wg.key" listen-port 51820
    for j in 0 1 2; do
      ((j == i)) && continue
      ip netns exec "${NS[$i]}" wg set "$dev" peer "$(cat "$WORK/${NAMES[$j]}/wg.pub")" \
        endpoint "${UL[$j]}:51820" allowed-ips "${OV[$j]}/32"
    done
    ip -n "${NS[$i]}" addr add "${OV[$i]}/24" dev "$dev"
    ip -n "${NS[$i]}" link set "$dev" mtu "$OV_MTU" up
  done
  local until=$((SECONDS + 30))
  for i in 0 1; do
    until in_ns "${NS[$i]}" ping -n -q -c1 -W 0.2 "${OV[2]}" >/dev/null 2>&1; do
      ((SECONDS < until)) || { say "no overlay ping ${NAMES[$i]} -> t"; return 1; }
      sleep 0.05
    done
  done
}

start_members() {  # start_members FAIRNESS
  if [[ $SYSTEM == wireguard-go ]]; then start_wg_members; return; fi
  local i pin
  PIDS=()
  for i in 0 1 2; do
    pin=$(pin_of "$i")
    if [[ -n ${DAEMON_NICE:-} ]]; then pin="nice -n $DAEMON_NICE $pin"; fi
    member_toml "$i" "$1" >"$WORK/${NAMES[$i]}/member.toml"
    "$PRIVNET_BIN" check --config "$WORK/${NAMES[$i]}/member.toml" >/dev/null
    # `ip netns exec` itself in the background (it execs the daemon), so that `$!` is the daemon.
    ip netns exec "${NS[$i]}" $pin "$PRIVNET_BIN" up --config "$WORK/${NAMES[$i]}/member.toml" \
      >"$WORK/daemon-${NAMES[$i]}.log" 2>&1 &
    PIDS+=($!)
  done
  local until=$((SECONDS + 30))
  for i in 0 1; do
    until in_ns "${NS[$i]}" ping -n -q -c1 -W 0.2 "${OV[2]}" >/dev/null 2>&1; do
      ((SECONDS < until)) || {
        say "no overlay ping ${NAMES[$i]} -> t"; cp "$WORK"/daemon-*.log "$RUN/" 2>/dev/null; return 1; }
      sleep 0.05
    done
  done
}

# The victim's ping to the target: p99, average, loss %, p50, p90 (ms; nearest rank).
victim_ping() {  # victim_ping LABEL
  in_ns nn-v ping -n -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 "${OV[2]}" >"$RUN/$1.ping" 2>&1 || true
  awk -F'time=' '/time=/ {split($2, a, " "); print a[1]}' "$RUN/$1.ping" | sort -n | awk -v n="$PING_COUNT" '
    {v[NR] = $1; s += $1}
    END {
      if (NR == 0) { print "nan nan 100 nan nan"; exit }
      r = int(0.99 * NR + 0.999999); if (r < 1) r = 1
      m = int(0.5 * NR + 0.999999); q = int(0.9 * NR + 0.999999)
      printf "%.3f %.3f %.1f %.3f %.3f\n", v[r], s / NR, 100 * (n - NR) / n, v[m], v[q]
    }'
}

# The victim's TCP throughput to the target in Mbit/s (iperf3 -t TCP_SECS, received). With
# VICTIM_RATE (e.g. 1G) the victim is an application that needs that much (iperf3 -b), not a bulk
# transfer that takes all it can: the case where a fair share can protect it fully.
victim_tcp() {  # victim_tcp LABEL
  local rate=()
  [[ -n ${VICTIM_RATE:-} ]] && rate=(-b "$VICTIM_RATE")
  timeout $((TCP_SECS + 20)) ip netns exec nn-v iperf3 -c "${OV[2]}" -p 5202 -t "$TCP_SECS" "${rate[@]}" -J \
    --connect-timeout 5000 >"$RUN/$1.tcp.json" 2>"$RUN/$1.tcp.err" || true
  jq -r '(.end.sum_received.bits_per_second // 0) / 1e6 | . * 10 | round / 10' "$RUN/$1.tcp.json" 2>/dev/null || echo 0
}

# The target's fairness drops of the flood source (datagrams), from its status.
target_fair_drops() {
  [[ $SYSTEM == privnet ]] || { echo "-"; return; }
  "$PRIVNET_BIN" status --socket "$WORK/t/status.sock" --json 2>/dev/null \
    | jq -r '[.. | objects | select(.name? == "f" and has("fair_dropped")) | .fair_dropped] | add // 0' 2>/dev/null || echo "?"
}

one_run() {  # one_run FAIRNESS REP
  local fair=$1 rep=$2 srv1 srv2 flood
  RUN="$OUT/raw/$SYSTEM-$FLOOD${PIN_TAG/+/-}-fair-$fair/rep$rep"
  mkdir -p "$RUN"
  netns_up
  start_members "$fair"
  ip netns exec nn-t $(pin_of 2) iperf3 -s -p 5201 >"$RUN/server-flood.log" 2>&1 &
  srv1=$!
  ip netns exec nn-t $(pin_of 2) iperf3 -s -p 5202 >"$RUN/server-victim.log" 2>&1 &
  srv2=$!
  PIDS+=("$srv1" "$srv2")
  sleep 1
  local solo_ping solo_tcp flood_ping flood_tcp
  solo_ping=$(victim_ping solo)
  solo_tcp=$(victim_tcp solo)
  # The flood lasts the victim's two tests plus 2 s before and a margin after; it ends by itself so
  # that iperf3 reports what reached the target.
  local pd secs
  pd=$(awk -v n="$PING_COUNT" -v i="$PING_INTERVAL" 'BEGIN {print int(n * i * 1.2 + 1)}')
  secs=$((2 + pd + TCP_SECS + 3))
  if [[ $FLOOD == tcp ]]; then
    ip netns exec nn-f $(pin_of 0) iperf3 -c "${OV[2]}" -p 5201 -P 4 -t "$secs" -J >"$RUN/flood.json" 2>"$RUN/flood.err" &
  else
    ip netns exec nn-f $(pin_of 0) iperf3 -c "${OV[2]}" -p 5201 -u -b 0 -l 1400 -t "$secs" -J >"$RUN/flood.json" 2>"$RUN/flood.err" &
  fi
  flood=$!
  sleep 2
  flood_ping=$(victim_ping flood)
  flood_tcp=$(victim_tcp flood)
  local drops
  drops=$(target_fair_drops)
  wait "$flood" 2>/dev/null || true
  [[ $SYSTEM != privnet ]] || "$PRIVNET_BIN" status --socket "$WORK/t/status.sock" --json >"$RUN/status-t.json" 2>/dev/null || true
  kill_ours "${PIDS[@]}"
  PIDS=()
  rm -f /var/run/wireguard/nnwg-*.sock
  cp "$WORK"/daemon-*.log "$RUN/" 2>/dev/null || true
  sleep 0.5
  netns_down
  read -r sp sa sl s50 s90 <<<"$solo_ping"
  read -r fp fa fl f50 f90 <<<"$flood_ping"
  local pr tr frate
  frate=$(jq -r '(.end.sum.bits_per_second // 0) / 1e6 | round' "$RUN/flood.json" 2>/dev/null || echo 0)
  pr=$(awk -v a="$fp" -v b="$sp" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
  tr=$(awk -v a="$flood_tcp" -v b="$solo_tcp" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
  printf '%s\t%s\t%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$([[ $SYSTEM == privnet ]] && echo "$fair" || echo "$SYSTEM")" "$rep" "$FLOOD" "$PIN_TAG" "$sp" "$fp" "$pr" \
    "$fl" "$solo_tcp" "$flood_tcp" "$tr" "$frate" "$drops" "$s50/$s90" "$f50/$f90" "$(date -u +%FT%TZ)" | tee -a "$OUT/results.tsv"
}

command -v iperf3 >/dev/null && command -v jq >/dev/null || { say "needs iperf3 and jq"; exit 1; }
prepare
[[ -s $OUT/results.tsv ]] || printf 'fairness\trep\tflood\tsolo_p99_ms\tflood_p99_ms\tp99_ratio\tflood_ping_loss_pct\tsolo_tcp_mbps\tflood_tcp_mbps\ttcp_ratio\tflood_mbps\ttarget_fair_drops\tsolo_p50/p90_ms\tflood_p50/p90_ms\tat\n' >"$OUT/results.tsv"
[[ $SYSTEM == privnet ]] || FAIRNESS="-"
say "$SYSTEM $([[ $SYSTEM == privnet ]] && "$PRIVNET_BIN" --version), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
  for fair in $FAIRNESS; do
    one_run "$fair" "$rep"
  done
done
