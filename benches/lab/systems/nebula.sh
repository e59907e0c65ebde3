#!/usr/bin/env bash
# nebula: Slack's Nebula (Debian's package), default cipher (AES-256-GCM), no lighthouse: each side
# finds the other through static_host_map. Nebula creates and addresses its own TUN.
source "$(dirname "$0")/../lib.sh"
: "${NEBULA_PORT:=4242}"
sys_version() { echo "nebula $(nebula -version | awk '{print $2}')"; }

nebula_yaml() {  # nebula_yaml SELF PEER_OVERLAY PEER_UNDERLAY DEV
  cat <<YAML
pki: {ca: "$WORK/ca.crt", cert: "$WORK/$1.crt", key: "$WORK/$1.key"}
static_host_map: {"$2": ["$3:$NEBULA_PORT"]}
lighthouse: {am_lighthouse: false, hosts: []}
listen: {host: 0.0.0.0, port: $NEBULA_PORT}
punchy: {punch: false}
tun: {disabled: false, dev: $4, drop_local_broadcast: false, drop_multicast: false, tx_queue: 500, mtu: $OV_MTU}
logging: {level: warning, format: text}
firewall:
  outbound: [{port: any, proto: any, host: any}]
  inbound: [{port: any, proto: any, host: any}]
YAML
}

sys_prepare() {
  (cd "$WORK"
   nebula-cert ca -name privnet-lab -out-crt ca.crt -out-key ca.key
   nebula-cert sign -name a -ip "$OV_A/$OV_PREFIX" -out-crt a.crt -out-key a.key
   nebula-cert sign -name b -ip "$OV_B/$OV_PREFIX" -out-crt b.crt -out-key b.key)
  nebula_yaml a "$OV_B" "$UL_B" neblab-a >"$WORK/a.yml"
  nebula_yaml b "$OV_A" "$UL_A" neblab-b >"$WORK/b.yml"
}

sys_start() {
  ip netns exec "$NS_A" nebula -config "$WORK/a.yml" >"$WORK/daemon-a.log" 2>&1 &
  PIDS_A=$!
  ip netns exec "$NS_B" nebula -config "$WORK/b.yml" >"$WORK/daemon-b.log" 2>&1 &
  PIDS_B=$!
}

sys_stop() { lab_kill $PIDS_A $PIDS_B; }
lab_main nebula
