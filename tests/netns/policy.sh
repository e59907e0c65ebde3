#!/usr/bin/env bash
# End-to-end tests of the access policy (issue 14, docs/POLICY.md §14): real sidecars in network
# namespaces enforcing one policy file, with real traffic both ways. Run by scripts/test.sh as root,
# after tests/netns/e2e.sh.
#
# Topology (namespaces named ppe-<pid>-*, created here; nothing touches the host's root namespace):
#
#   ppe-<pid>-br     bridge br0 (10.232.0.1/24) + one veth port per member
#   ppe-<pid>-web1   groups [web]: underlay 10.232.0.21, overlay 10.78.0.21 fd78::21
#   ppe-<pid>-web9   groups [web]: underlay 10.232.0.29, overlay 10.78.0.29 fd78::29
#   ppe-<pid>-db1    groups [db]:  underlay 10.232.0.31, overlay 10.78.0.31 fd78::31
#   ppe-<pid>-rogue  groups [web]: underlay 10.232.0.41, overlay 10.78.0.41 fd78::41 — its config has
#                    no `node.policy` (a member that ignores its own egress policy)
#
# web1, web9 and db1 share one policy file (WORK/policy.toml, the §14 example plus a deny for
# web9 and UDP reject); every member runs privnet-testapp (TCP 5432 SHA-256 transfer, UDP 53 echo)
# and policy_helper.py's echo server (TCP 22, 7000, 8080; UDP 54, 514), so a refused flow is
# refused by the policy, never by a missing listener. Each case asserts the traffic's outcome and
# the counters of `privnet status --json` at both ends (policy_denied / policy_rejected, the policy
# hash, flows cut), and the reload and receiver cases the audit log ([log] audit, JSON lines).
# Cases (names as in docs/POLICY.md §14):
#   P1 web reaches db:5432, db cannot open connections to web (replies still flow)
#   P2 a deny for one member overriding a group allow
#   P3 reject: an immediate RST (TCP), ICMP administratively prohibited (UDP)
#   P4 UDP and ICMP rules (dns allowed, other UDP denied; ping allowed one way only)
#   P5 a platform-tier deny the application tier cannot undo
#   P6 a member ignoring its own egress policy is stopped by the receiver
#   P7 a reload (SIGHUP) that removes an allow cuts the running flow; the session stays up
#   P8 a broken reload keeps the old policy (the log names file and line)
# Every command is bounded by `timeout`, the whole run by POLICY_E2E_TIMEOUT. Cleanup (sidecars,
# helpers, namespaces, temp files) runs on EXIT, even on failure or interrupt.
#
# Usage:  sudo tests/netns/policy.sh     (builds nothing: run `cargo build --release -p privnet-sidecar
#                                         -p privnet-testapp` first, or set PRIVNET / TESTAPP)
# Environment:
#   PRIVNET, TESTAPP         binaries (default target/release/privnet, target/release/privnet-testapp)
#   POLICY_E2E_TIMEOUT       bound on the whole run in seconds (default 300)
#   POLICY_E2E_KEEP=1        keep the work directory (configs, logs) and print its path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/tests/netns/policy.sh"
if [[ -z "${POLICY_E2E_INNER:-}" ]]; then
    export POLICY_E2E_INNER=1
    exec timeout -k 20 "${POLICY_E2E_TIMEOUT:-300}" bash "$SELF" "$@"
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "policy.sh: needs root (network namespaces, TUN devices)" >&2
    exit 1
fi

PRIVNET="${PRIVNET:-$ROOT/target/release/privnet}"
TESTAPP="${TESTAPP:-$ROOT/target/release/privnet-testapp}"
HELPER="$ROOT/tests/netns/policy_helper.py"
for bin in "$PRIVNET" "$TESTAPP"; do
    [[ -x "$bin" ]] || {
        echo "policy.sh: $bin missing: cargo build --release -p privnet-sidecar -p privnet-testapp" >&2
        exit 1
    }
done
for tool in ip ping python3 timeout; do
    command -v "$tool" >/dev/null || {
        echo "policy.sh: $tool missing (scripts/test.sh installs it)" >&2
        exit 1
    }
done

RUN="ppe-$$"
BR="$RUN-br"
MEMBERS=(web1 web9 db1 rogue)
ENFORCING=(web1 web9 db1) # members whose config names the policy file
declare -A UNDERLAY=([web1]=10.232.0.21 [web9]=10.232.0.29 [db1]=10.232.0.31 [rogue]=10.232.0.41)
declare -A OV4=([web1]=10.78.0.21 [web9]=10.78.0.29 [db1]=10.78.0.31 [rogue]=10.78.0.41)
declare -A OV6=([web1]=fd78::21 [web9]=fd78::29 [db1]=fd78::31 [rogue]=fd78::41)
declare -A GROUP=([web1]=web [web9]=web [db1]=db [rogue]=web)
PORT=51820
TUN=privnet0
# A silent drop is seen as a connect/probe timeout of this many seconds; a reject must answer in
# well under REJECT_MAX_MS.
DENY_WAIT=1.5
REJECT_MAX_MS=300

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ppe-$$.XXXXXX")"
chmod 700 "$WORK"
POLICY="$WORK/policy.toml"
PASSED=0
FAILED=0
FAILED_NAMES=()
CLEANED=0

ns() { echo "$RUN-$1"; }
nsx() { # nsx MEMBER CMD...: run CMD inside MEMBER's namespace
    local m="$1"
    shift
    ip netns exec "$(ns "$m")" "$@"
}
log() { printf '    %s\n' "$*"; }
fail() {
    printf '    FAILED: %s\n' "$*" >&2
    exit 1
}
track() { echo "$1" >>"$WORK/pids"; } # helper processes to kill at cleanup

# --- cleanup ---------------------------------------------------------------------------------------------
cleanup() {
    [[ "$CLEANED" == 1 ]] && return 0
    CLEANED=1
    set +e
    local f pid n
    for f in "$WORK"/*/pid; do
        [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$WORK/pids"
    fi
    sleep 0.3
    for f in "$WORK"/*/pid; do
        [[ -f "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$WORK/pids"
    fi
    # Anything else still running inside our namespaces (by pid, only in namespaces this run created).
    for n in "${MEMBERS[@]}" br; do
        for pid in $(ip netns pids "$RUN-$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for n in "${MEMBERS[@]}" br; do
        ip netns del "$RUN-$n" 2>/dev/null
    done
    if [[ "${POLICY_E2E_KEEP:-0}" == 1 ]]; then
        echo "policy e2e: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    return 0
}
on_exit() {
    local rc=$?
    cleanup
    if ip netns list | awk '{print $1}' | grep -q "^$RUN-"; then
        echo "policy e2e: FAIL cleanup: namespaces left: $(ip netns list | awk '{print $1}' | grep "^$RUN-" | tr '\n' ' ')" >&2
        rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- test runner ---------------------------------------------------------------------------------------
run_test() {
    local name="$1" fn="$2" rc t0 t1
    printf '\n--- %s\n' "$name"
    t0=$(date +%s.%N)
    set +e
    (
        set -eE
        trap 'echo "    error: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
        "$fn"
    )
    rc=$?
    set -e
    t1=$(date +%s.%N)
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        printf 'PASS %s (%s s)\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        printf 'FAIL %s (exit %d)\n' "$name" "$rc"
    fi
    local m pid
    for m in "${MEMBERS[@]}"; do
        pid="$(cat "$WORK/$m/pid" 2>/dev/null || true)"
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            echo "    WARNING: $m's sidecar (pid ${pid:-?}) is not running; its log ends with:"
            tail -n 3 "$WORK/$m/sidecar.log" 2>/dev/null | sed 's/^/      /'
        fi
    done
}

# --- sidecars and probes --------------------------------------------------------------------------------
cfg() { echo "$WORK/$1/$1.toml"; }

start_sidecar() { # start_sidecar MEMBER: privnet up in the member's namespace; pid -> WORK/M/pid
    local m="$1"
    rm -f "$WORK/$m/pid"
    # Through a symlink named privnet-policy-e2e (same binary): someone's `pkill -f "privnet up"` on a
    # shared machine must not take this run's sidecars down.
    [[ -e "$WORK/privnet-policy-e2e" ]] || ln -s "$PRIVNET" "$WORK/privnet-policy-e2e"
    (
        set +eE
        trap - ERR
        bash -c 'echo $$ >"$1"; exec ip netns exec "$2" "$3" up --config "$4"' _ \
            "$WORK/$m/pid" "$(ns "$m")" "$WORK/privnet-policy-e2e" "$(cfg "$m")" >>"$WORK/$m/sidecar.log" 2>&1 </dev/null
    ) >/dev/null 2>&1 &
    for _ in $(seq 1 50); do
        [[ -s "$WORK/$m/pid" ]] && return 0
        sleep 0.02
    done
    echo "start_sidecar $m: no pid" >&2
    return 1
}

status_json() { timeout 5 "$PRIVNET" status --json --config "$(cfg "$1")"; }
get() { status_json "$1" | python3 "$HELPER" status-get "${@:2}"; } # get MEMBER FIELD...
probe() { # probe MEMBER ARGS...: a policy_helper probe from MEMBER's namespace, logged
    local m="$1" out rc=0
    shift
    out="$(timeout 15 ip netns exec "$(ns "$m")" python3 "$HELPER" "$@")" || rc=$?
    log "$m: ${*:1:3} ${*: -1}: $out"
    [[ $rc -eq 0 ]] || fail "$m: $*: got $out"
    LAST="$out"
}
ms_of() { python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["ms"]))' "$1"; }

wait_established() { # wait_established MEMBER N [SECONDS]
    local m="$1" n="$2" secs="${3:-10}" deadline up
    deadline=$(($(date +%s) + secs))
    while (($(date +%s) < deadline)); do
        up="$(status_json "$m" 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin) for p in n["peers"] if p["established"]))' 2>/dev/null || echo 0)"
        ((up >= n)) && return 0
        sleep 0.2
    done
    echo "$m: fewer than $n peers established after $secs s" >&2
    return 1
}

# wait_drop MEMBER REASON ABOVE: until MEMBER's drop counter REASON exceeds ABOVE (status snapshots
# are published every second); prints the value.
wait_drop() {
    local m="$1" reason="$2" above="$3" v=0
    for _ in $(seq 1 30); do
        v="$(get "$m" "drops.$reason")"
        if ((v > above)); then
            echo "$v"
            return 0
        fi
        sleep 0.1
    done
    echo "$m: drop counter $reason stayed at $v (expected > $above)" >&2
    return 1
}
# same_drop MEMBER REASON VALUE: the counter has not moved (checked after a snapshot period).
same_drop() {
    local v
    sleep 1.1
    v="$(get "$1" "drops.$2")"
    [[ "$v" == "$3" ]] || fail "$1's $2 moved from $3 to $v"
}

# audit_has MEMBER KEY=VALUE...: the member's audit log (JSON lines, written by a thread of the
# sidecar) gets a line with these fields within 3 s; prints it.
audit_has() {
    local m="$1" line
    shift
    for _ in $(seq 1 30); do
        if line="$(python3 "$HELPER" audit "$WORK/$m/audit.jsonl" "$@" 2>/dev/null)"; then
            echo "$line"
            return 0
        fi
        sleep 0.1
    done
    echo "$m's audit log has no line with $*" >&2
    return 1
}
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

transfer() { # transfer FROM HOST PORT BYTES: a SHA-256 verified privnet-testapp transfer
    local out
    out="$(timeout 30 ip netns exec "$(ns "$1")" "$TESTAPP" send-tcp "$2:$3" --bytes "$4" --seed 14 --deadline-secs 25 --connect-timeout-ms 3000)" ||
        fail "$1 -> $2:$3: transfer failed: $out"
    log "$1 -> $2:$3: $out"
}

ping_ok() { # ping_ok FROM DST
    local out
    out="$(timeout 10 ip netns exec "$(ns "$1")" ping -n -c 3 -i 0.2 -W 2 "$2" 2>&1)" ||
        fail "ping $1 -> $2: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    log "ping $1 -> $2: $(echo "$out" | grep -E 'packets transmitted' | sed 's/, time.*//')"
}
ping_denied() { # ping_denied FROM DST
    local out
    if out="$(timeout 10 ip netns exec "$(ns "$1")" ping -n -c 3 -i 0.2 -W 1 "$2" 2>&1)"; then
        fail "ping $1 -> $2 was answered: $(echo "$out" | grep -E 'packets transmitted')"
    fi
    echo "$out" | grep -qE ' 0 received' || fail "ping $1 -> $2: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    log "ping $1 -> $2 (denied): $(echo "$out" | grep -E 'packets transmitted' | sed 's/, time.*//')"
}

# --- the policy -----------------------------------------------------------------------------------------
# write_policy [--without ssh-for-everyone]: the policy file, replaced atomically (a rename), so a
# reload never reads it half-written.
write_policy() {
    local without="${2:-}"
    python3 - "$POLICY" "$without" <<'EOF'
import os, sys
path, without = sys.argv[1], sys.argv[2]
rules = [
    ("platform", "no-ssh-from-web", "deny", '{ groups = { any = ["web"] } }', '"any"', 'proto = "tcp"\nports = [22]'),
    ("application", "not-web9", "deny", '{ members = ["web9"] }', '"any"', ''),
    ("application", "web-to-db", "allow", '{ groups = { any = ["web"] } }', '{ groups = { any = ["db"] } }', 'proto = "tcp"\nports = [5432]'),
    ("application", "ssh-for-everyone", "allow", '"network"', '"network"', 'proto = "tcp"\nports = [22]'),
    ("application", "no-admin", "reject", '"network"', '"network"', 'proto = "tcp"\nports = [8080]'),
    ("application", "no-syslog", "reject", '"network"', '"network"', 'proto = "udp"\nports = [514]'),
    ("baseline", "ping", "allow", '{ groups = { any = ["web"] } }', '"network"', 'proto = ["icmp", "icmpv6"]\nicmp = ["echo-request"]'),
    ("baseline", "dns", "allow", '"network"', '"network"', 'proto = "udp"\nports = [53]'),
]
out = ['# tests/netns/policy.sh: the access policy of web1, web9 and db1', 'name = "policy e2e"', 'default = "deny"']
for tier, rid, action, frm, to, extra in rules:
    if rid == without:
        continue
    out += ["", f"[[{tier}]]", f'id = "{rid}"', f'action = "{action}"', f"from = {frm}", f"to = {to}"]
    if extra:
        out.append(extra)
tmp = path + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(out) + "\n")
os.replace(tmp, path)
EOF
}

# --- setup -----------------------------------------------------------------------------------------------
setup_topology() {
    ip netns add "$BR"
    ip -n "$BR" link set lo up
    ip -n "$BR" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$BR" addr add 10.232.0.1/24 dev br0
    ip -n "$BR" link set br0 up
    local m ok
    for m in "${MEMBERS[@]}"; do
        ip netns add "$(ns "$m")"
        ip -n "$(ns "$m")" link set lo up
        ip link add ul0 netns "$(ns "$m")" type veth peer name "p-$m" netns "$BR"
        ip -n "$BR" link set "p-$m" master br0 up
        ip -n "$(ns "$m")" addr add "${UNDERLAY[$m]}/24" dev ul0
        ip -n "$(ns "$m")" link set ul0 mtu 1500 up
    done
    for m in "${MEMBERS[@]}"; do
        ok=0
        for _ in $(seq 1 50); do
            if nsx web1 ping -n -c1 -W 0.2 -q "${UNDERLAY[$m]}" >/dev/null 2>&1; then
                ok=1
                break
            fi
        done
        [[ $ok == 1 ]] || fail "underlay: web1 cannot reach ${UNDERLAY[$m]}"
    done
}

setup_credentials() {
    local m
    "$PRIVNET" ca init --name polnet --prefix 10.78.0.0/16 --prefix fd78::/48 \
        --out-dir "$WORK/ca" >"$WORK/ca.log"
    for m in "${MEMBERS[@]}"; do
        mkdir -p "$WORK/$m"
        "$PRIVNET" keygen --out "$WORK/$m/private.key" >/dev/null 2>&1
        "$PRIVNET" cert issue --ca-dir "$WORK/ca" --name "$m" --group "${GROUP[$m]}" \
            --address "${OV4[$m]}" --address "${OV6[$m]}" \
            --public-key "$WORK/$m/private.key.pub" --out "$WORK/$m/member.crt" >/dev/null 2>&1
    done
}

write_config() { # write_config MEMBER: every other member is a peer
    local m="$1" p policy_line='policy = "../policy.toml"'
    [[ "$m" == rogue ]] && policy_line='# patched: no policy (this member ignores its own egress policy)'
    {
        cat <<EOF
# privnet policy e2e: member $m (group ${GROUP[$m]})
[node]
network = "polnet"
private_key = "private.key"
certificate = "member.crt"
ca_certificates = ["../ca/ca.crt"]
network_psk = "../ca/network.psk"
listen = "0.0.0.0:$PORT"
$policy_line

[tun]
mode = "tun"
name = "$TUN"
mtu = 1420
underlay_mtu = 1500

[status]
socket = "$WORK/$m/status.sock"

[log]
level = "info"
EOF
        [[ "$m" == rogue ]] || printf 'audit = "%s"\n' "$WORK/$m/audit.jsonl"
        for p in "${MEMBERS[@]}"; do
            [[ "$p" == "$m" ]] && continue
            cat <<EOF

[[peer]]
name = "$p"
public_key = "$(cat "$WORK/$p/private.key.pub")"
addresses = ["${OV4[$p]}", "${OV6[$p]}"]
endpoint = "${UNDERLAY[$p]}:$PORT"
EOF
        done
    } >"$(cfg "$m")"
    "$PRIVNET" check --config "$(cfg "$m")" >"$WORK/$m/check.log" 2>&1 ||
        fail "privnet check $m: $(cat "$WORK/$m/check.log")"
}

setup() {
    setup_topology
    setup_credentials
    write_policy
    local m
    for m in "${MEMBERS[@]}"; do write_config "$m"; done
    grep -q 'policy' "$WORK/db1/check.log" || fail "privnet check db1 does not mention the policy: $(cat "$WORK/db1/check.log")"
    for m in "${MEMBERS[@]}"; do
        ip netns exec "$(ns "$m")" "$TESTAPP" serve --tcp 5432 --udp 53 --bind :: >"$WORK/$m/testapp.log" 2>&1 &
        track $!
        ip netns exec "$(ns "$m")" python3 "$HELPER" serve --tcp 22,7000,8080 --udp 54,514 --seconds 600 \
            --ready "$WORK/$m/echo.ready" >"$WORK/$m/echo.log" 2>&1 &
        track $!
    done
    local t0 t1
    t0=$(date +%s%N)
    for m in "${MEMBERS[@]}"; do start_sidecar "$m"; done
    for m in "${MEMBERS[@]}"; do wait_established "$m" 3 15; done
    t1=$(date +%s%N)
    log "4 sidecars up, fully meshed in $(((t1 - t0) / 1000000)) ms"
    for m in "${MEMBERS[@]}"; do
        [[ -f "$WORK/$m/echo.ready" ]] || fail "$m: echo server not ready: $(cat "$WORK/$m/echo.log")"
    done
    for m in "${ENFORCING[@]}"; do
        grep -q 'policy' "$WORK/$m/sidecar.log" || fail "$m's log does not say which policy it enforces"
    done
    log "db1: $(grep -m1 -i 'policy' "$WORK/db1/sidecar.log" | cut -c1-200)"
    log "rogue: $(grep -m1 -i 'policy' "$WORK/rogue/sidecar.log" | cut -c1-200 || echo 'no policy line')"
}

# --- cases -----------------------------------------------------------------------------------------------
# P1: web1 opens db1:5432 (SHA-256 verified transfers, v4 and v6: the data goes one way, the digest
# comes back as a reply); db1 cannot open web1:5432 — dropped at db1 before encryption, so web1 never
# sees it.
test_web_reaches_db() {
    transfer web1 "${OV4[db1]}" 5432 4194304
    transfer web1 "[${OV6[db1]}]" 5432 1048576
    local d_db d_web
    d_db="$(get db1 drops.policy_denied)"
    d_web="$(get web1 drops.policy_denied)"
    probe db1 tcp-connect "${OV4[web1]}" 5432 --timeout "$DENY_WAIT" --expect timeout
    probe db1 tcp-connect "${OV6[web1]}" 5432 --timeout "$DENY_WAIT" --expect timeout
    d_db="$(wait_drop db1 policy_denied "$d_db")"
    log "db1 policy_denied (sender): $d_db"
    same_drop web1 policy_denied "$d_web"
}

# P2: web9 is in `web`, but `not-web9` comes first: denied at web9 itself (db1 sees nothing);
# web1 still reaches db1 through the group allow.
test_deny_for_one_member() {
    local d9 d_db
    d9="$(get web9 drops.policy_denied)"
    d_db="$(get db1 drops.policy_denied)"
    probe web9 tcp-connect "${OV4[db1]}" 5432 --timeout "$DENY_WAIT" --expect timeout
    ping_denied web9 "${OV4[db1]}"
    d9="$(wait_drop web9 policy_denied "$d9")"
    log "web9 policy_denied (sender): $d9"
    same_drop db1 policy_denied "$d_db"
    transfer web1 "${OV4[db1]}" 5432 65536
}

# P3: reject answers at once: a RST for TCP (connect refused, measured), ICMP administratively
# prohibited for UDP (type 3 code 13; ICMPv6 1/1), built by web1's own sidecar (counted there,
# nothing sent to db1).
test_reject() {
    local r ms d_db
    r="$(get web1 drops.policy_rejected)"
    d_db="$(get db1 drops.policy_rejected)"
    probe web1 tcp-connect "${OV4[db1]}" 8080 --timeout 3 --expect refused
    ms="$(ms_of "$LAST")"
    ((ms < REJECT_MAX_MS)) || fail "the RST took $ms ms (connect timeout 3 s)"
    probe web1 tcp-connect "${OV6[db1]}" 8080 --timeout 3 --expect refused
    ms="$(ms_of "$LAST")"
    ((ms < REJECT_MAX_MS)) || fail "the v6 RST took $ms ms"
    probe web1 udp-probe "${OV4[db1]}" 514 --timeout 3 --expect icmp:3/13
    ms="$(ms_of "$LAST")"
    ((ms < REJECT_MAX_MS)) || fail "the ICMP error took $ms ms"
    probe web1 udp-probe "${OV6[db1]}" 514 --timeout 3 --expect icmp:1/1
    r="$(wait_drop web1 policy_rejected "$((r + 3))")"
    log "web1 policy_rejected: $r"
    same_drop db1 policy_rejected "$d_db"
}

# P4: UDP and ICMP rules: udp/53 allowed both ways (echoes are replies), udp/54 denied; ping allowed
# from web (echo replies flow back), denied from db.
test_udp_icmp() {
    local d_web d_db
    probe web1 udp-probe "${OV4[db1]}" 53 --timeout 3 --expect echo
    probe web1 udp-probe "${OV6[db1]}" 53 --timeout 3 --expect echo
    probe db1 udp-probe "${OV4[web1]}" 53 --timeout 3 --expect echo
    d_web="$(get web1 drops.policy_denied)"
    probe web1 udp-probe "${OV4[db1]}" 54 --timeout "$DENY_WAIT" --expect silence
    wait_drop web1 policy_denied "$d_web" >/dev/null
    ping_ok web1 "${OV4[db1]}"
    ping_ok web1 "${OV6[db1]}"
    d_db="$(get db1 drops.policy_denied)"
    ping_denied db1 "${OV4[web1]}"
    ping_denied db1 "${OV6[web1]}"
    d_db="$(wait_drop db1 policy_denied "$((d_db + 3))")"
    log "db1 policy_denied after its pings: $d_db"
}

# P5: `ssh-for-everyone` (application) allows tcp/22 between members, but the platform's
# `no-ssh-from-web` denies it from web first; db1 -> web1:22 is allowed.
test_platform_deny() {
    local d_web
    d_web="$(get web1 drops.policy_denied)"
    probe web1 tcp-connect "${OV4[db1]}" 22 --timeout "$DENY_WAIT" --expect timeout
    wait_drop web1 policy_denied "$d_web" >/dev/null
    probe db1 tcp-connect "${OV4[web1]}" 22 --timeout 3 --expect connected
}

# P6: rogue (group web) runs without a policy, so nothing stops its packets on the way out: db1, the
# receiver, drops them (policy_denied counted at db1, never at rogue), answers its reject with a RST
# sealed back to rogue, and lets through what the policy allows.
test_receiver_stops_rogue() {
    local d_db r_db
    d_db="$(get db1 drops.policy_denied)"
    r_db="$(get db1 drops.policy_rejected)"
    probe rogue tcp-connect "${OV4[db1]}" 22 --timeout "$DENY_WAIT" --expect timeout
    probe rogue tcp-connect "${OV4[db1]}" 7000 --timeout "$DENY_WAIT" --expect timeout
    probe rogue udp-probe "${OV4[db1]}" 54 --timeout "$DENY_WAIT" --expect silence
    d_db="$(wait_drop db1 policy_denied "$((d_db + 2))")"
    log "db1 policy_denied (receiver): $d_db"
    probe rogue tcp-connect "${OV4[db1]}" 8080 --timeout 3 --expect refused
    (($(ms_of "$LAST") < REJECT_MAX_MS)) || fail "the receiver's RST took $(ms_of "$LAST") ms"
    wait_drop db1 policy_rejected "$r_db" >/dev/null
    # db1's audit log names the member, its groups, the rule and the tier.
    audit_has db1 event=flow_refused peer=rogue peer_groups=web direction=inbound dst_port=22 rule=no-ssh-from-web tier=platform >/dev/null
    audit_has db1 event=flow_refused peer=rogue direction=inbound action=reject dst_port=8080 rule=no-admin >/dev/null
    log "db1's audit log: rogue's refused flows (no-ssh-from-web, no-admin, inbound)"
    [[ "$(get rogue drops.policy_denied) $(get rogue drops.policy_rejected)" == "0 0" ]] ||
        fail "rogue (no policy) counted policy drops: $(get rogue drops.policy_denied drops.policy_rejected)"
    transfer rogue "${OV4[db1]}" 5432 65536
}

# hold_echoes FILE: the running flow's echo count so far.
hold_echoes() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["echoes"])' "$1" 2>/dev/null || echo 0; }

# sighup_all: SIGHUP every enforcing sidecar.
sighup_all() {
    local m
    for m in "${ENFORCING[@]}"; do kill -HUP "$(cat "$WORK/$m/pid")"; done
}

# P7: db1 -> web1:22 is a running interactive flow (an echo every 100 ms); the policy file loses
# `ssh-for-everyone` and the sidecars get SIGHUP: the flow stops, a new connection is refused, the
# sessions stay (peers up, handshake counts unchanged), other flows go on.
test_reload_cuts() {
    local hold="$WORK/hold.json" hpid n0 n1 n2 hs_db hs_web d_db deadline m cut h hash0 line
    ip netns exec "$(ns db1)" python3 "$HELPER" tcp-hold "${OV4[web1]}" 22 --seconds 60 --out "$hold" \
        >"$WORK/hold.log" 2>&1 &
    hpid=$!
    track "$hpid"
    for _ in $(seq 1 50); do
        (($(hold_echoes "$hold") >= 10)) && break
        sleep 0.1
    done
    n0="$(hold_echoes "$hold")"
    ((n0 >= 10)) || fail "the running flow db1 -> web1:22 did not start: $(cat "$hold" 2>/dev/null) $(cat "$WORK/hold.log")"
    hs_db="$(get db1 peer.web1.handshakes)"
    hs_web="$(get web1 peer.db1.handshakes)"
    d_db="$(get db1 drops.policy_denied)"
    hash0="$(get db1 policy.hash)"
    [[ "$hash0" != null && "$(get web1 policy.hash)" == "$hash0" ]] || fail "db1 and web1 do not show the same policy hash"
    log "running flow db1 -> web1:22: $n0 echoes; handshakes db1->web1 $hs_db, web1->db1 $hs_web; policy $hash0"
    local -A lines
    for m in "${ENFORCING[@]}"; do lines[$m]="$(grep -ciE 'polic' "$WORK/$m/sidecar.log")"; done
    write_policy --without ssh-for-everyone
    sighup_all
    # The flow stops within a few seconds of the signal...
    deadline=$(($(date +%s) + 8))
    n1="$(hold_echoes "$hold")"
    cut=0
    while (($(date +%s) < deadline)); do
        sleep 1
        n2="$(hold_echoes "$hold")"
        if [[ "$n2" == "$n1" ]]; then
            cut=1
            break
        fi
        n1="$n2"
    done
    ((cut == 1)) || fail "the running flow still echoes 8 s after the reload ($n2 echoes)"
    # ...and stays stopped.
    sleep 2
    n2="$(hold_echoes "$hold")"
    [[ "$n2" == "$n1" ]] || fail "the flow resumed after the reload: $n1 -> $n2 echoes"
    log "running flow cut after $n1 echoes (no echo for 3 s)"
    for m in "${ENFORCING[@]}"; do
        h="$(get "$m" policy.hash)"
        [[ "$h" != "$hash0" && "$h" != null ]] || fail "$m still shows the policy hash $hash0"
    done
    log "new policy $(get db1 policy.hash) in force on ${ENFORCING[*]}"
    for m in db1 web1; do
        cut="$(get "$m" policy.totals.cut)"
        ((cut >= 1)) || fail "$m's status counts $cut flows cut"
        h="$(get "$m" policy.hash | tr -d '"')"
        line="$(audit_has "$m" event=policy_applied trigger=reload hash="$h")"
        (($(json_field "$line" flows_cut) >= 1)) || fail "$m's audit line of the reload cuts no flow: $line"
        log "$m: flows cut $cut (status); audit: policy_applied trigger=reload flows_cut=$(json_field "$line" flows_cut) rules=$(json_field "$line" rules)"
    done
    for m in "${ENFORCING[@]}"; do
        (($(grep -ciE 'polic' "$WORK/$m/sidecar.log") > ${lines[$m]})) || fail "$m's log says nothing about the new policy"
    done
    log "db1: $(grep -iE 'polic' "$WORK/db1/sidecar.log" | tail -n 1 | cut -c1-220)"
    kill -TERM "$hpid" 2>/dev/null || true
    wait "$hpid" 2>/dev/null || true
    probe db1 tcp-connect "${OV4[web1]}" 22 --timeout "$DENY_WAIT" --expect timeout
    wait_drop db1 policy_denied "$d_db" >/dev/null
    # The sessions were never touched.
    [[ "$(get db1 peer.web1.established) $(get db1 peer.web1.handshakes)" == "true $hs_db" ]] ||
        fail "db1's session with web1 changed: $(get db1 peer.web1.established peer.web1.handshakes) (handshakes were $hs_db)"
    [[ "$(get web1 peer.db1.established) $(get web1 peer.db1.handshakes)" == "true $hs_web" ]] ||
        fail "web1's session with db1 changed: $(get web1 peer.db1.established peer.web1.handshakes) (handshakes were $hs_web)"
    log "sessions db1<->web1 up, handshakes unchanged ($hs_db, $hs_web)"
    transfer web1 "${OV4[db1]}" 5432 1048576
    probe web1 udp-probe "${OV4[db1]}" 53 --timeout 3 --expect echo
}

# P8: a policy file with an error on line 5 and SIGHUP: each sidecar logs the file and line and keeps
# the policy of P7 (web -> db:5432 works, db -> web:22 stays denied, reject still rejects).
test_broken_reload() {
    local m tmp hash0
    hash0="$(get db1 policy.hash)"
    tmp="$POLICY.tmp"
    {
        echo '# tests/netns/policy.sh: a broken policy (line 5)'
        echo 'default = "deny"'
        echo '[[application]]'
        echo 'id = "web-to-everything"'
        echo 'action = "permit"'
        echo 'from = "network"'
        echo 'to = "network"'
    } >"$tmp"
    mv "$tmp" "$POLICY"
    sighup_all
    for m in "${ENFORCING[@]}"; do
        for _ in $(seq 1 80); do
            grep -qE 'policy\.toml:5' "$WORK/$m/sidecar.log" && break
            sleep 0.1
        done
        grep -qE 'policy\.toml:5' "$WORK/$m/sidecar.log" || fail "$m's log does not name policy.toml:5: $(tail -n 3 "$WORK/$m/sidecar.log")"
        kill -0 "$(cat "$WORK/$m/pid")" || fail "$m's sidecar stopped on a broken policy"
    done
    log "db1: $(grep -E 'policy\.toml:5' "$WORK/db1/sidecar.log" | tail -n 1 | cut -c1-220)"
    for m in "${ENFORCING[@]}"; do
        [[ "$(get "$m" policy.hash)" == "$hash0" ]] || fail "$m's policy hash changed: $(get "$m" policy.hash)"
        get "$m" policy_refused | grep -q 'policy\.toml:5' || fail "$m's status does not show the refused policy: $(get "$m" policy_refused)"
        [[ "$(python3 "$HELPER" audit "$WORK/$m/audit.jsonl" event=policy_applied | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["hash"]))')" == "$hash0" ]] ||
            fail "$m's audit log shows a policy applied after the broken reload"
    done
    log "db1 status: policy $hash0 kept; policy_refused $(get db1 policy_refused | cut -c1-160)"
    transfer web1 "${OV4[db1]}" 5432 1048576
    probe db1 tcp-connect "${OV4[web1]}" 22 --timeout "$DENY_WAIT" --expect timeout
    probe web1 tcp-connect "${OV4[db1]}" 8080 --timeout 3 --expect refused
    probe db1 udp-probe "${OV4[web1]}" 7000 --timeout "$DENY_WAIT" --expect silence
}

# --- main ------------------------------------------------------------------------------------------------
echo "policy e2e: run $RUN, privnet $("$PRIVNET" --version 2>/dev/null || echo '?'), work dir $WORK"
printf '\n--- setup\n'
set +e
(
    set -eE
    trap 'echo "    error: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
    setup
)
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
    echo "FAIL setup"
    for m in "${MEMBERS[@]}"; do
        [[ -f "$WORK/$m/sidecar.log" ]] && { echo "--- $m sidecar log"; tail -n 20 "$WORK/$m/sidecar.log"; }
    done
    echo "policy e2e: 0 passed, 1 failed"
    exit 1
fi

run_test "P1 web reaches db:5432, db cannot open connections to web" test_web_reaches_db
run_test "P2 a deny for one member overriding a group allow" test_deny_for_one_member
run_test "P3 reject: immediate RST (TCP), ICMP administratively prohibited (UDP)" test_reject
run_test "P4 UDP and ICMP rules" test_udp_icmp
run_test "P5 a platform-tier deny the application tier cannot undo" test_platform_deny
run_test "P6 a member ignoring its own egress policy is stopped by the receiver" test_receiver_stops_rogue
run_test "P7 a reload that removes an allow cuts the running flow, the session stays up" test_reload_cuts
run_test "P8 a broken reload keeps the old policy" test_broken_reload
if [[ $FAILED -gt 0 ]]; then
    for m in "${MEMBERS[@]}"; do
        [[ -f "$WORK/$m/sidecar.log" ]] && { echo "--- $m sidecar log (last 15 lines)"; tail -n 15 "$WORK/$m/sidecar.log"; }
    done
fi
printf '\n--- cleanup\n'
cleanup
left="$(ip netns list | awk '{print $1}' | grep "^$RUN-" || true)"
if [[ -z "$left" ]]; then
    PASSED=$((PASSED + 1))
    echo "PASS cleanup: sidecars stopped, no $RUN-* namespace left"
else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("cleanup")
    echo "FAIL cleanup: namespaces left: $left"
fi

echo
[[ ${#FAILED_NAMES[@]} -eq 0 ]] || printf 'failed: %s\n' "${FAILED_NAMES[@]}"
echo "policy e2e: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
