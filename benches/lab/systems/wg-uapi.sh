# wg-uapi.sh — shared by wireguard-go.sh and boringtun.sh: both are configured through the WireGuard
# UAPI socket /var/run/wireguard/<dev>.sock with `wg setconf`. That path is in the host's file system,
# not in the namespace, so the two sides need different device names.
: "${WG_DEV_A:=wglab-a}" "${WG_DEV_B:=wglab-b}" "${WG_PORT:=51820}"

wg_conf() {  # wg_conf OWN_KEY PEER_PUB PEER_UNDERLAY PEER_OVERLAY
  printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n[Peer]\nPublicKey = %s\nEndpoint = %s:%s\nAllowedIPs = %s/32\n' \
    "$(cat "$1")" "$WG_PORT" "$(cat "$2")" "$3" "$WG_PORT" "$4"
}

sys_prepare() {
  umask 077
  local s
  for s in a b; do wg genkey >"$WORK/$s.key"; wg pubkey <"$WORK/$s.key" >"$WORK/$s.pub"; done
  wg_conf "$WORK/a.key" "$WORK/b.pub" "$UL_B" "$OV_B" >"$WORK/a.conf"
  wg_conf "$WORK/b.key" "$WORK/a.pub" "$UL_A" "$OV_A" >"$WORK/b.conf"
}

wg_up() {  # wg_up NS DEV CONF ADDR
  wait_for_path "/var/run/wireguard/$2.sock"
  ip netns exec "$1" wg setconf "$2" "$3"
  ip -n "$1" addr add "$4/$OV_PREFIX" dev "$2"
  ip -n "$1" link set "$2" mtu "$OV_MTU" up
}

sys_start() {
  ip netns exec "$NS_A" "${WG_CMD[@]}" "$WG_DEV_A" >"$WORK/daemon-a.log" 2>&1 &
  PIDS_A=$!
  ip netns exec "$NS_B" "${WG_CMD[@]}" "$WG_DEV_B" >"$WORK/daemon-b.log" 2>&1 &
  PIDS_B=$!
  wg_up "$NS_A" "$WG_DEV_A" "$WORK/a.conf" "$OV_A"
  wg_up "$NS_B" "$WG_DEV_B" "$WORK/b.conf" "$OV_B"
}

sys_stop() {
  lab_kill $PIDS_A $PIDS_B
  rm -f "/var/run/wireguard/$WG_DEV_A.sock" "/var/run/wireguard/$WG_DEV_B.sock"
}
