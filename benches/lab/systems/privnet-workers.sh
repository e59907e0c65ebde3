#!/usr/bin/env bash
# privnet with two crypto threads per member (`[tun] workers = 2`, docs/CONFIG.md): large seal and
# open batches split between the network's thread and one helper, next to the default (1).
PRIVNET_WORKERS=2 PRIVNET_SYSTEM=privnet-workers exec "$(dirname "$0")/privnet.sh" "$@"
