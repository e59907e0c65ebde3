#!/usr/bin/env bash
# wireguard-go: the Go userspace WireGuard (Debian's package). -f keeps it in the foreground.
source "$(dirname "$0")/../lib.sh"
source "$LAB_DIR/systems/wg-uapi.sh"
WG_CMD=(env WG_PROCESS_FOREGROUND=1 wireguard-go -f)
sys_version() { wireguard-go --version | head -1; }
lab_main wireguard-go
