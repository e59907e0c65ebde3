#!/usr/bin/env bash
# baseline: the bare veth underlay, no overlay; the same tests go straight to $UL_B.
source "$(dirname "$0")/../lib.sh"
sys_version() { echo "veth, kernel $(uname -r)"; }
sys_prepare() { :; }
sys_start() { :; }
sys_stop() { :; }
LAB_TARGET=$UL_B
lab_main baseline
