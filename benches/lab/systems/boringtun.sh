#!/usr/bin/env bash
# boringtun: Cloudflare's Rust userspace WireGuard (boringtun-cli from crates.io), default threads and
# multi-queue TUN. Root in a namespace: skip its privilege drop, which would break the UAPI socket.
source "$(dirname "$0")/../lib.sh"
source "$LAB_DIR/systems/wg-uapi.sh"
BORINGTUN=${BORINGTUN:-$(command -v boringtun-cli || echo "$HOME/.cargo/bin/boringtun-cli")}
WG_CMD=("$BORINGTUN" --foreground --disable-drop-privileges --log /dev/stderr)
sys_version() { "$BORINGTUN" --version; }
lab_main boringtun
