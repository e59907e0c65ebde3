#!/usr/bin/env bash
# onetun: a userspace WireGuard port forwarder (smoltcp + boringtun; crates.io, `cargo install onetun`)
# in A, forwarding 127.0.0.1:$IPERF_PORT and 127.0.0.1:$RTT_PORT to B's overlay address, and a
# WireGuard peer with a TUN device in B (wireguard-go by default, ONETUN_PEER=boringtun for
# boringtun-cli), configured with `wg setconf` as in systems/wireguard-go.sh. The same topology as
# systems/privnet-userspace.sh: iperf3 in A talks to the forward, its server in B is a kernel socket
# behind B's TUN. No ICMP and no UDP tests (TCP forwards; see lib.sh, port-forward systems).
: "${LAB_TESTS:=tcp1-ab tcp1-ba tcp4-ab tcprtt}"
source "$(dirname "$0")/../lib.sh"
source "$LAB_DIR/systems/wg-uapi.sh"
LAB_IPERF_TARGET=127.0.0.1 LAB_RTT_TARGET=127.0.0.1 LAB_NO_PING=1 LAB_SKIP_TESTS="udp1400 udp64"
ONETUN=${ONETUN:-$(command -v onetun || echo "$HOME/.cargo/bin/onetun")}
case ${ONETUN_PEER:-wireguard-go} in
  wireguard-go) WG_CMD=(env WG_PROCESS_FOREGROUND=1 wireguard-go -f) ;;
  boringtun)
    BORINGTUN=${BORINGTUN:-$(command -v boringtun-cli || echo "$HOME/.cargo/bin/boringtun-cli")}
    WG_CMD=("$BORINGTUN" --foreground --disable-drop-privileges --log /dev/stderr) ;;
  *) say "ONETUN_PEER must be wireguard-go or boringtun"; exit 2 ;;
esac
sys_version() { echo "$("$ONETUN" --version 2>&1 | head -1), peer ${ONETUN_PEER:-wireguard-go}"; }

sys_start() {
  # B: the WireGuard peer with a TUN device. Its peer (onetun) has no fixed endpoint: onetun sends
  # from an ephemeral port and B learns it from the handshake.
  printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\n' \
    "$(cat "$WORK/b.key")" "$WG_PORT" "$(cat "$WORK/a.pub")" "$OV_A" >"$WORK/b.conf"
  ip netns exec "$NS_B" "${WG_CMD[@]}" "$WG_DEV_B" >"$WORK/daemon-b.log" 2>&1 &
  PIDS_B=$!
  wg_up "$NS_B" "$WG_DEV_B" "$WORK/b.conf" "$OV_B"
  # A: onetun, no device; its inner packets are at most $OV_MTU bytes like everyone's.
  ip netns exec "$NS_A" "$ONETUN" \
    "127.0.0.1:$IPERF_PORT:$OV_B:$IPERF_PORT:TCP" "127.0.0.1:$RTT_PORT:$OV_B:$RTT_PORT:TCP" \
    --endpoint-addr "$UL_B:$WG_PORT" --endpoint-public-key "$(cat "$WORK/b.pub")" \
    --private-key-file "$WORK/a.key" --source-peer-ip "$OV_A" \
    --max-transmission-unit "$OV_MTU" --log warn >"$WORK/daemon-a.log" 2>&1 &
  PIDS_A=$!
}

sys_ready() { forward_ready "$1"; }
sys_stop() {
  lab_kill $PIDS_A $PIDS_B
  rm -f "/var/run/wireguard/$WG_DEV_B.sock"
}
lab_main onetun
