#!/usr/bin/env bash
# A second privnet build next to the current one, for before/after comparisons in the same
# interleaved rounds: PRIVNET_BASE_BIN points at that build's `privnet` binary (a private copy),
# e.g. one built from an earlier commit in a git worktree. Configured exactly as systems/privnet.sh.
: "${PRIVNET_BASE_BIN:?set PRIVNET_BASE_BIN to a copy of the privnet binary of the base build}"
PRIVNET_BIN=$PRIVNET_BASE_BIN PRIVNET_REV=${PRIVNET_BASE_REV:-base} PRIVNET_SYSTEM=privnet-base \
  exec "$(dirname "$0")/privnet.sh" "$@"
