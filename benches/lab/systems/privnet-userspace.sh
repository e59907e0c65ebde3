#!/usr/bin/env bash
# privnet-userspace: the embedded stack's TCP through the sidecar's userspace mode. A runs `privnet up`
# with tun.mode = "userspace" (no TUN device in A: the embedded smoltcp stack is the inner side) and
# two TCP port forwards, 127.0.0.1:$IPERF_PORT -> B:$IPERF_PORT and 127.0.0.1:$RTT_PORT -> B:$RTT_PORT;
# B runs `privnet up` in mode "tun" (exactly as systems/privnet.sh), so iperf3's server and the RTT
# echo in B are ordinary kernel sockets behind B's TUN. Every byte iperf3 sends in A crosses loopback
# TCP into the sidecar, the embedded stack's TCP to B, and B's kernel TCP: the path an application in
# an unprivileged container uses. onetun.sh measures the same topology with onetun in A.
# No UDP tests: the forwards are TCP (see lib.sh, port-forward systems). The ping goes the other
# way, from B's kernel to A's overlay address, which A's embedded stack answers (ICMP echo): the
# overlay round trip with the userspace stack at one end, comparable with TUN mode's ping.
: "${LAB_TESTS:=tcp1-ab tcp1-ba tcp4-ab tcprtt}"
source "$(dirname "$0")/../lib.sh"
: "${PRIVNET_BIN:?set PRIVNET_BIN to a copy of target/release/privnet}" "${PRIVNET_PORT:=51820}"
LAB_IPERF_TARGET=127.0.0.1 LAB_RTT_TARGET=127.0.0.1 LAB_SKIP_TESTS="udp1400 udp64"
LAB_PING_FROM=B LAB_PING_TARGET=$OV_A
sys_version() { echo "privnet $("$PRIVNET_BIN" --version | awk '{print $2}') (${PRIVNET_REV:-unknown rev}), A userspace, B tun"; }

member_toml() {  # member_toml SELF PEER PEER_OVERLAY PEER_UNDERLAY OWN_UNDERLAY MODE
  cat <<TOML
[node]
network = "lab"
private_key = "$WORK/$1/private.key"
certificate = "$WORK/$1/member.crt"
ca_certificates = ["$WORK/ca/ca.crt"]
network_psk = "$WORK/ca/network.psk"
listen = "$5:$PRIVNET_PORT"

[tun]
mode = "$6"
TOML
  if [[ $6 == tun ]]; then
    printf 'name = "pvlab-%s"\nmtu = %s\nunderlay_mtu = %s\n' "$1" "$OV_MTU" "$UL_MTU"
  else
    # The embedded stack's MTU comes from the underlay: the same 1440-byte inner packets as the TUN.
    printf 'underlay_mtu = %s\n\n' "$UL_MTU"
    printf '[[userspace.forward]]\nlisten = "127.0.0.1:%s"\nto = "%s:%s"\n\n' "$IPERF_PORT" "$3" "$IPERF_PORT"
    printf '[[userspace.forward]]\nlisten = "127.0.0.1:%s"\nto = "%s:%s"\n' "$RTT_PORT" "$3" "$RTT_PORT"
  fi
  cat <<TOML

[[peer]]
name = "$2"
public_key = "$(cat "$WORK/$2/private.key.pub")"
addresses = ["$3"]
endpoint = "$4:$PRIVNET_PORT"

[status]
socket = "$WORK/$1/status.sock"

[log]
level = "warn"
format = "text"
TOML
}

sys_prepare() {
  local s ip
  "$PRIVNET_BIN" ca init --name lab --prefix "$OV_NET" --out-dir "$WORK/ca" >/dev/null
  for s in a b; do
    mkdir -p "$WORK/$s"
    "$PRIVNET_BIN" keygen --out "$WORK/$s/private.key" >/dev/null 2>&1
    ip=$OV_A; [[ $s == b ]] && ip=$OV_B
    "$PRIVNET_BIN" cert issue --ca-dir "$WORK/ca" --name "$s" --address "$ip" \
      --public-key "$WORK/$s/private.key.pub" --out "$WORK/$s/member.crt" >/dev/null
  done
  member_toml a b "$OV_B" "$UL_B" "$UL_A" userspace >"$WORK/a/member.toml"
  member_toml b a "$OV_A" "$UL_A" "$UL_B" tun >"$WORK/b/member.toml"
  "$PRIVNET_BIN" check --config "$WORK/a/member.toml" >/dev/null
  "$PRIVNET_BIN" check --config "$WORK/b/member.toml" >/dev/null
}

sys_start() {
  ip netns exec "$NS_A" "$PRIVNET_BIN" up --config "$WORK/a/member.toml" >"$WORK/daemon-a.log" 2>&1 &
  PIDS_A=$!
  ip netns exec "$NS_B" "$PRIVNET_BIN" up --config "$WORK/b/member.toml" >"$WORK/daemon-b.log" 2>&1 &
  PIDS_B=$!
}

sys_ready() { forward_ready "$1"; }
sys_stop() { lab_kill $PIDS_A $PIDS_B; }
lab_main privnet-userspace
