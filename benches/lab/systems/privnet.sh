#!/usr/bin/env bash
# privnet: our sidecar, `privnet up` in mode "tun". Identities come from the privnet CLI itself
# (ca init, keygen, cert issue); the sidecar creates, addresses and raises its TUN from its certificate.
# PRIVNET_BIN must point at a private copy of the binary (run.sh copies target/release/privnet, which
# may be rebuilt while the lab runs).
source "$(dirname "$0")/../lib.sh"
: "${PRIVNET_BIN:?set PRIVNET_BIN to a copy of target/release/privnet}" "${PRIVNET_PORT:=51820}"
# PRIVNET_BUSY_POLL_US: [tun] busy_poll_us of both members (unset: the sidecar's default).
# PRIVNET_BATCH_HOLD_US: [tun] batch_hold_us of both members (unset: the sidecar's default).
# PRIVNET_CIPHER: [node] cipher of both members (unset: the default, aes-256-gcm); PRIVNET_SYSTEM: the
# name the results are filed under (systems/privnet-chacha.sh sets both).
# PRIVNET_WORKERS: [tun] workers of both members (unset: the default, 1; systems/privnet-workers.sh
# sets 2).
# PRIVNET_POLICY_RULES: both members enforce a generated policy of that many rules (`lab_policy`,
# exported by systems/privnet-policy.sh, writes it); unset: no policy.
sys_version() { echo "privnet $("$PRIVNET_BIN" --version | awk '{print $2}') (${PRIVNET_REV:-unknown rev})"; }

member_toml() {  # member_toml SELF PEER PEER_OVERLAY PEER_UNDERLAY OWN_UNDERLAY DEV
  cat <<TOML
[node]
network = "lab"
private_key = "$WORK/$1/private.key"
certificate = "$WORK/$1/member.crt"
ca_certificates = ["$WORK/ca/ca.crt"]
network_psk = "$WORK/ca/network.psk"
listen = "$5:$PRIVNET_PORT"
${PRIVNET_CIPHER:+cipher = \"$PRIVNET_CIPHER\"}
${PRIVNET_POLICY_RULES:+policy = \"$WORK/policy.toml\"}

[tun]
mode = "tun"
name = "$6"
mtu = $OV_MTU
underlay_mtu = $UL_MTU
${PRIVNET_BUSY_POLL_US:+busy_poll_us = $PRIVNET_BUSY_POLL_US}
${PRIVNET_BATCH_HOLD_US:+batch_hold_us = $PRIVNET_BATCH_HOLD_US}
${PRIVNET_WORKERS:+workers = $PRIVNET_WORKERS}

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
  if [[ -n ${PRIVNET_POLICY_RULES:-} ]]; then
    lab_policy "$PRIVNET_POLICY_RULES" "$IPERF_PORT" >"$WORK/policy.toml"
    "$PRIVNET_BIN" policy check "$WORK/policy.toml" >"$WORK/policy-check.txt" 2>&1 \
      || { cat "$WORK/policy-check.txt" >&2; return 1; }
  fi
  member_toml a b "$OV_B" "$UL_B" "$UL_A" pvlab-a >"$WORK/a/member.toml"
  member_toml b a "$OV_A" "$UL_A" "$UL_B" pvlab-b >"$WORK/b/member.toml"
  "$PRIVNET_BIN" check --config "$WORK/a/member.toml" >/dev/null
  "$PRIVNET_BIN" check --config "$WORK/b/member.toml" >/dev/null
}

sys_start() {
  ip netns exec "$NS_A" "$PRIVNET_BIN" up --config "$WORK/a/member.toml" >"$WORK/daemon-a.log" 2>&1 &
  PIDS_A=$!
  ip netns exec "$NS_B" "$PRIVNET_BIN" up --config "$WORK/b/member.toml" >"$WORK/daemon-b.log" 2>&1 &
  PIDS_B=$!
}

sys_stop() { lab_kill $PIDS_A $PIDS_B; }
lab_main "${PRIVNET_SYSTEM:-privnet}"
