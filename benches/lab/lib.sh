# benches/lab/lib.sh — settings, /proc probes and the per-system driver of the privnet namespace lab.
#
# Sourced by benches/lab/systems/<name>.sh. A system file defines these hooks and ends with
# `lab_main <name>`:
#   sys_version   print one line describing the daemon (optional)
#   sys_prepare   write keys/certificates/configs into $WORK                      (not timed)
#   sys_start     launch one daemon in $NS_A and one in $NS_B, each in the foreground of its
#                 `ip netns exec` so that `$!` is the daemon; set PIDS_A / PIDS_B; make sure the
#                 overlay device carries $OV_A/$OV_PREFIX (A) and $OV_B/$OV_PREFIX (B) at MTU $OV_MTU.
#                 Timed: setup_ms runs from just before this hook to the first ping reply A→B.
#   sys_stop      stop by PID (lab_kill) and remove anything made outside $WORK; idempotent.
#   sys_ready     (optional) instead of the first ping reply: return 0 once traffic passes, within
#                 $1 seconds (a port forwarder has no overlay address in A to ping; see tcp_rtt.py).
# For a run without an overlay set LAB_TARGET=$UL_B before lab_main.
# A port-forward system (the daemon in A forwards local ports of A to B's overlay address) sets,
# before lab_main: LAB_IPERF_TARGET=127.0.0.1 (iperf3 and its data connections go to the forward
# of $IPERF_PORT), LAB_RTT_TARGET=127.0.0.1 (the forward of $RTT_PORT), LAB_NO_PING=1 (no ICMP
# through a TCP forward) and LAB_SKIP_TESTS="udp1400 udp64" (TCP forwards only). Instead of
# LAB_NO_PING, LAB_PING_FROM=B with LAB_PING_TARGET=$OV_A pings the other way, when A's daemon
# answers ICMP echo itself (privnet's embedded stack does).
#
# Everything stays inside two namespaces joined by one veth pair:
#   $NS_A: veth-a $UL_A/24 (MTU 1500)  <——>  $NS_B: veth-b $UL_B/24 (MTU 1500)
#   overlay $OV_A/$OV_PREFIX (A)              overlay $OV_B/$OV_PREFIX (B), MTU $OV_MTU

set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

: "${NS_A:=privnet-lab-a}" "${NS_B:=privnet-lab-b}"
: "${UL_A:=10.199.0.1}" "${UL_B:=10.199.0.2}" "${UL_MTU:=1500}"
: "${OV_A:=100.70.0.1}" "${OV_B:=100.70.0.2}" "${OV_PREFIX:=24}" "${OV_NET:=100.70.0.0/24}"
: "${OV_MTU:=1440}"                  # 1500 - 20 (IPv4) - 8 (UDP) - 32 (header + tag)
: "${RESULTS:=$LAB_DIR/results}"     # raw data: $RESULTS/raw/<name>/rep<REP>/
: "${REP:=1}"
: "${TCP_SECS:=10}" "${UDP_SECS:=5}" "${PING_COUNT:=500}" "${PING_INTERVAL:=0.01}"
: "${SETUP_TIMEOUT:=30}" "${IPERF_PORT:=5201}"
# PING_ONLY=1: stop after the ping test (latency work; the repetition is not summarized).
# LAB_PIN_DAEMONS="CPU_A CPU_B": pin every thread of A's and B's daemon (taskset -a) once they
# answer (latency work: takes the scheduler's placement out of the comparison).
# LAB_PERF=1: `perf stat` both daemons during the ping (instructions, context switches, CPU
# migrations, task clock) into $RUN/perf-ping.txt: per-ping costs that do not depend on the noise.
# LAB_PERF_SCHED=1: `perf sched record -a` during the ping into $RUN/sched.data, its timehist into
# $RUN/sched-timehist.txt and sched_summary.py's per-thread table (wake-ups per ping, scheduling
# delay, run time per wake-up) into $RUN/sched-summary.txt: where a lone packet's time goes.
# LAB_SMAPS=1: each daemon's resident mappings at the idle point, largest first, into $RUN/smaps-PID.txt.
# LAB_TESTS: the tests to run after the ping, in order (default: all six): five iperf3 tests and
# tcprtt, PING_COUNT request/response round trips of 64 B over one TCP connection (TCP_NODELAY)
# every PING_INTERVAL, to tcp_rtt.py's echo server in B on port RTT_PORT (started for every system).
: "${LAB_TESTS:=tcp1-ab tcp1-ba tcp4-ab udp1400 udp64 tcprtt}"
: "${RTT_PORT:=5300}"
export NS_A NS_B UL_A UL_B OV_A OV_B OV_PREFIX OV_NET OV_MTU RESULTS REP

PIDS_A="" PIDS_B="" RTT_SERVER=""
LAB_TARGET=${LAB_TARGET:-}
LAB_IPERF_TARGET=${LAB_IPERF_TARGET:-} LAB_RTT_TARGET=${LAB_RTT_TARGET:-}
LAB_NO_PING=${LAB_NO_PING:-0} LAB_SKIP_TESTS=${LAB_SKIP_TESTS:-}
LAB_PING_FROM=${LAB_PING_FROM:-A} LAB_PING_TARGET=${LAB_PING_TARGET:-}
HZ=$(getconf CLK_TCK)

say() { printf '[%s] %s: %s\n' "$(date +%T)" "${SYS_NAME:-lab}" "$*" >&2; }
ns_a() { ip netns exec "$NS_A" "$@"; }
ns_b() { ip netns exec "$NS_B" "$@"; }
mono_ns() { date +%s%N; }

# ---- namespaces ----------------------------------------------------------------------------------
netns_down() {
  local ns
  for ns in "$NS_A" "$NS_B"; do
    ip netns list | awk '{print $1}' | grep -qx "$ns" && ip netns del "$ns"
  done
  return 0
}

netns_up() {
  netns_down
  ip netns add "$NS_A"
  ip netns add "$NS_B"
  ip link add veth-a netns "$NS_A" type veth peer name veth-b netns "$NS_B"
  ip -n "$NS_A" addr add "$UL_A/24" dev veth-a
  ip -n "$NS_B" addr add "$UL_B/24" dev veth-b
  ip -n "$NS_A" link set lo up
  ip -n "$NS_B" link set lo up
  ip -n "$NS_A" link set veth-a mtu "$UL_MTU" up
  ip -n "$NS_B" link set veth-b mtu "$UL_MTU" up
  local i
  for i in $(seq 50); do
    ns_a ping -n -q -c1 -W 0.2 "$UL_B" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  say "underlay $UL_A -> $UL_B does not answer"
  return 1
}

# ---- processes -----------------------------------------------------------------------------------
# TERM the given PIDs, wait up to 3 s, then KILL whatever is left. Only ever our own PIDs.
lab_kill() {
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

wait_for_path() {
  local i
  for i in $(seq 300); do [[ -e $1 ]] && return 0; sleep 0.01; done
  say "gave up waiting for $1"
  return 1
}

# utime+stime in clock ticks, summed over PIDs (all threads of each process).
cpu_ticks() {
  local p sum=0 t
  for p in "$@"; do
    t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
# A /proc/PID/status field in KiB (VmRSS, VmHWM), summed over PIDs.
status_kb() {
  local field=$1 p sum=0 v
  shift
  for p in "$@"; do
    v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# Busy and total jiffies of the whole machine.
machine_ticks() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
# UDP receive-buffer errors of a namespace and tx+rx drops over all its links (the TUN included).
ns_drops() {
  ip netns exec "$1" sh -c '
    awk "/^Udp:/ && ++n == 2 {printf \"%s \", \$6}" /proc/net/snmp
    cat /sys/class/net/*/statistics/tx_dropped /sys/class/net/*/statistics/rx_dropped | awk "{s += \$1} END {print s + 0}"'
}

# First ping reply from A to $1 within $2 seconds (one probe every 5 ms).
first_reply() {
  local target=$1 until=$(( $(mono_ns) + $2 * 1000000000 )) left
  while (( $(mono_ns) < until )); do
    left=$(( (until - $(mono_ns)) / 1000000000 + 1 ))
    ns_a ping -n -q -c1 -i 0.005 -w "$left" "$target" >/dev/null 2>&1 && return 0
    sleep 0.005
  done
  return 1
}

# Port-forward systems' readiness (their sys_ready): the first 64 B round trip through the forward
# of $RTT_PORT on 127.0.0.1 in A, to tcp_rtt.py's echo in B, within $1 seconds (a try every 5 ms).
forward_ready() {
  local until=$(( $(mono_ns) + $1 * 1000000000 ))
  while (( $(mono_ns) < until )); do
    ns_a python3 "$LAB_DIR/tcp_rtt.py" probe 127.0.0.1 "$RTT_PORT" --count 1 --timeout 1 >/dev/null 2>&1 && return 0
    sleep 0.005
  done
  return 1
}

# One iperf3 test: a one-shot server in B, the client in A (-J). Around the client it samples the
# daemons' CPU ticks, the machine's busy ticks and the drop counters.
# usage: run_iperf LABEL iperf3-client-args...   -> $RUN/LABEL.json, LABEL.probe.json
run_iperf() {
  local label=$1 srv i
  shift
  ns_b iperf3 -s -1 -p "$IPERF_PORT" >"$RUN/$label.server.log" 2>&1 &
  srv=$!
  for i in $(seq 100); do
    ns_b ss -Hltn "sport = :$IPERF_PORT" | grep -q . && break
    sleep 0.02
  done
  local ca0 cb0 ca1 cb1 mb0 mt0 mb1 mt1 w0 w1 da0 db0 da1 db1
  da0=$(ns_drops "$NS_A"); db0=$(ns_drops "$NS_B")
  ca0=$(cpu_ticks $PIDS_A); cb0=$(cpu_ticks $PIDS_B)
  read -r mb0 mt0 < <(machine_ticks)
  w0=$(mono_ns)
  timeout $((TCP_SECS + UDP_SECS + 40)) ip netns exec "$NS_A" \
    iperf3 -c "$LAB_IPERF_TARGET" -p "$IPERF_PORT" -J --connect-timeout 5000 "$@" \
    >"$RUN/$label.json" 2>"$RUN/$label.err" || say "iperf3 $label exited $?"
  w1=$(mono_ns)
  read -r mb1 mt1 < <(machine_ticks)
  ca1=$(cpu_ticks $PIDS_A); cb1=$(cpu_ticks $PIDS_B)
  lab_kill "$srv"
  wait "$srv" 2>/dev/null || true
  da1=$(ns_drops "$NS_A"); db1=$(ns_drops "$NS_B")
  jq -n --argjson wall_ns $((w1 - w0)) --argjson hz "$HZ" \
    --argjson cpu_a $((ca1 - ca0)) --argjson cpu_b $((cb1 - cb0)) \
    --argjson busy $((mb1 - mb0)) --argjson total $((mt1 - mt0)) \
    --arg da0 "$da0" --arg da1 "$da1" --arg db0 "$db0" --arg db1 "$db1" '
    def d(a; b): [(b | split(" ") | map(tonumber)), (a | split(" ") | map(tonumber))] | transpose | map(.[0] - .[1]);
    { wall_s: ($wall_ns / 1e9),
      daemon_cpu_s_a: ($cpu_a / $hz), daemon_cpu_s_b: ($cpu_b / $hz),
      machine_busy_pct: (if $total > 0 then 100 * $busy / $total else null end),
      drops_a: d($da0; $da1), drops_b: d($db0; $db1) }' >"$RUN/$label.probe.json"
}

lab_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  declare -F sys_stop >/dev/null && sys_stop >/dev/null 2>&1
  [[ -n $RTT_SERVER ]] && lab_kill "$RTT_SERVER"
  netns_down
  if [[ -n ${WORK:-} && -d $WORK ]]; then
    cp "$WORK"/*.log "$RUN"/ 2>/dev/null
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# The driver for one system and one repetition.
lab_main() {
  SYS_NAME=$1
  LAB_TARGET=${LAB_TARGET:-$OV_B}
  LAB_IPERF_TARGET=${LAB_IPERF_TARGET:-$LAB_TARGET}
  LAB_RTT_TARGET=${LAB_RTT_TARGET:-$LAB_TARGET}
  LAB_PING_TARGET=${LAB_PING_TARGET:-$LAB_TARGET}
  RUN=$RESULTS/raw/$SYS_NAME/rep$REP
  rm -rf "$RUN"
  mkdir -p "$RUN"
  WORK=$(mktemp -d "/tmp/privnet-lab-$SYS_NAME.XXXXXX")
  trap lab_cleanup EXIT INT TERM

  netns_up
  sys_prepare
  # The tcprtt test's echo server in B (not a daemon: its CPU is not counted).
  ip netns exec "$NS_B" python3 "$LAB_DIR/tcp_rtt.py" serve "$RTT_PORT" >"$WORK/rtt-server.log" 2>&1 &
  RTT_SERVER=$!

  local t0 setup_ms
  say "rep $REP: starting"
  t0=$(mono_ns)
  sys_start
  if declare -F sys_ready >/dev/null; then
    if ! sys_ready "$SETUP_TIMEOUT"; then
      say "no traffic through the system within ${SETUP_TIMEOUT}s"
      exit 1
    fi
  elif ! first_reply "$LAB_TARGET" "$SETUP_TIMEOUT"; then
    say "no reply from $LAB_TARGET within ${SETUP_TIMEOUT}s"
    exit 1
  fi
  setup_ms=$(( ($(mono_ns) - t0) / 1000000 ))
  if [[ -n ${LAB_PIN_DAEMONS:-} ]]; then
    read -r pin_a pin_b <<<"$LAB_PIN_DAEMONS"
    taskset -a -pc "$pin_a" $PIDS_A >/dev/null && taskset -a -pc "$pin_b" $PIDS_B >/dev/null \
      || say "could not pin the daemons to $LAB_PIN_DAEMONS"
  fi
  say "first reply after ${setup_ms} ms (daemons A=[$PIDS_A] B=[$PIDS_B])"
  sleep 1
  # Idle footprint: after the handshake and one ping, before any measured traffic.
  local rss_idle_a rss_idle_b p
  rss_idle_a=$(status_kb VmRSS $PIDS_A); rss_idle_b=$(status_kb VmRSS $PIDS_B)
  # LAB_SMAPS=1: where the idle footprint is (each daemon's resident mappings, largest first).
  if [[ ${LAB_SMAPS:-0} == 1 ]]; then
    for p in $PIDS_A $PIDS_B; do
      awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {rss[name] += $2}
           END {for (n in rss) if (rss[n] > 0) printf "%8d kB  %s\n", rss[n], n}' "/proc/$p/smaps" \
        | sort -rn >"$RUN/smaps-$p.txt" 2>/dev/null || true
      grep -E '^(Threads|VmRSS|RssAnon|RssFile)' "/proc/$p/status" >>"$RUN/smaps-$p.txt" 2>/dev/null || true
    done
  fi
  for p in $PIDS_A $PIDS_B; do
    kill -0 "$p" 2>/dev/null || { say "daemon $p exited after setup"; exit 3; }
  done

  if [[ $LAB_NO_PING == 1 ]]; then
    say "no ICMP ping through this system (see the tcprtt test)"
  else
    local ping_ns=$NS_A
    [[ $LAB_PING_FROM == B ]] && ping_ns=$NS_B
    local perf_pid=""
    if [[ ${LAB_PERF:-0} == 1 ]] && command -v perf >/dev/null; then
      perf stat -e instructions,context-switches,cpu-migrations,task-clock \
        -p "$PIDS_A,$PIDS_B" --per-thread -o "$RUN/perf-ping.txt" &
      perf_pid=$!
      sleep 0.2
    fi
    local sched_pid=""
    if [[ ${LAB_PERF_SCHED:-0} == 1 ]] && command -v perf >/dev/null; then
      perf sched record -a -o "$RUN/sched.data" >/dev/null 2>&1 &
      sched_pid=$!
      sleep 0.5
    fi
    timeout 60 ip netns exec "$ping_ns" ping -n -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 "$LAB_PING_TARGET" \
      >"$RUN/ping.txt" 2>&1 || say "ping exited $?"
    if [[ -n $perf_pid ]]; then
      kill -INT "$perf_pid" 2>/dev/null || true
      wait "$perf_pid" 2>/dev/null || true
    fi
    if [[ -n $sched_pid ]]; then
      kill -INT "$sched_pid" 2>/dev/null || true
      wait "$sched_pid" 2>/dev/null || true
      perf sched timehist -i "$RUN/sched.data" >"$RUN/sched-timehist.txt" 2>/dev/null || true
      python3 "$LAB_DIR/sched_summary.py" "$RUN/sched-timehist.txt" --pings "$PING_COUNT" \
        --pids "$PIDS_A $PIDS_B" >"$RUN/sched-summary.txt" 2>&1 || say "sched summary failed"
      rm -f "$RUN/sched.data"
    fi
  fi
  if [[ ${PING_ONLY:-0} == 1 ]]; then  # quick latency iterations: no iperf3, no meta.json
    say "rep $REP: ping only: $(tail -1 "$RUN/ping.txt")"
    return 0
  fi

  local t
  for t in $LAB_TESTS; do
    if [[ " $LAB_SKIP_TESTS " == *" $t "* ]]; then
      say "test $t does not apply to this system: skipped"
      continue
    fi
    case $t in
      tcp1-ab) run_iperf tcp1-ab -t "$TCP_SECS" ;;
      tcp1-ba) run_iperf tcp1-ba -t "$TCP_SECS" -R ;;
      tcp4-ab) run_iperf tcp4-ab -t "$TCP_SECS" -P 4 ;;
      udp1400) run_iperf udp1400 -u -b 0 -l 1400 -t "$UDP_SECS" ;;
      udp64) run_iperf udp64 -u -b 0 -l 64 -t "$UDP_SECS" ;;
      tcprtt) timeout 120 ip netns exec "$NS_A" python3 "$LAB_DIR/tcp_rtt.py" probe "$LAB_RTT_TARGET" "$RTT_PORT" \
                --count "$PING_COUNT" --interval "$PING_INTERVAL" >"$RUN/tcprtt.txt" 2>&1 || say "tcprtt exited $?" ;;
      *) say "unknown test $t in LAB_TESTS"; exit 2 ;;
    esac
  done

  # A daemon that died (or was killed from outside) invalidates the repetition: no meta.json is
  # written, summarize.py skips the rep, and the non-zero exit lets run.sh retry it.
  for p in $PIDS_A $PIDS_B; do
    if ! kill -0 "$p" 2>/dev/null; then
      say "rep $REP: daemon $p is gone before the end of the tests; repetition invalid"
      exit 3
    fi
  done

  local ver=""
  declare -F sys_version >/dev/null && ver=$(sys_version 2>&1 | head -1)
  jq -n --arg name "$SYS_NAME" --argjson rep "$REP" --arg version "$ver" --argjson setup_ms "$setup_ms" \
    --arg target "$LAB_TARGET" --argjson ov_mtu "$OV_MTU" \
    --argjson rss_idle_a_kb "$rss_idle_a" --argjson rss_idle_b_kb "$rss_idle_b" \
    --argjson hwm_a_kb "$(status_kb VmHWM $PIDS_A)" --argjson hwm_b_kb "$(status_kb VmHWM $PIDS_B)" \
    --arg pids_a "$PIDS_A" --arg pids_b "$PIDS_B" --argjson tcp_secs "$TCP_SECS" \
    --argjson udp_secs "$UDP_SECS" --arg date "$(date -Is)" \
    '$ARGS.named' >"$RUN/meta.json"
  say "rep $REP: done"
}
