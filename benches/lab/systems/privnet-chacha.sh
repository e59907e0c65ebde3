#!/usr/bin/env bash
# privnet with the ChaCha20-Poly1305 cipher suite (`[node] cipher = "chacha20-poly1305"`): the same
# AEAD as the WireGuard implementations, next to the default AES-256-GCM (which Nebula uses too).
PRIVNET_CIPHER=chacha20-poly1305 PRIVNET_SYSTEM=privnet-chacha exec "$(dirname "$0")/privnet.sh" "$@"
