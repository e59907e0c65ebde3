#!/usr/bin/env bash
# Generate the complete example set of this directory into OUT (default ./privnet-example): a CA
# (network "demo"), the members member-a and member-b (keys, certificates, via `privnet member add`),
# and the two annotated configurations of this directory with the generated peer keys, then
# `privnet check` each. Usage: examples/configs/generate.sh [OUT]   (PRIVNET=path/to/privnet to pick
# the binary; default `privnet` on the PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-privnet-example}"
privnet="${PRIVNET:-privnet}"
if [[ -e "$out" ]]; then
    echo "generate.sh: $out exists; give a path that does not" >&2
    exit 1
fi
mkdir -p "$out"
cd "$out"
"$privnet" ca init --name demo --prefix 10.77.0.0/16 --prefix fd77::/48 --route 10.88.0.0/16 \
    --out-dir ca >/dev/null
"$privnet" member add --ca-dir ca --name member-a --address 10.77.0.2 --address fd77::2 --group web \
    --endpoint member-a:51820 >/dev/null
"$privnet" member add --ca-dir ca --name member-b --address 10.77.0.3 --address fd77::3 \
    --route 10.88.1.0/24 --group db --days 90 --endpoint member-b:51820 >/dev/null
# The annotated configurations of this directory replace the generated ones, with the real peer key.
for pair in member-a:member-b member-b:member-a; do
    me="${pair%%:*}"
    peer="${pair##*:}"
    key="$(cat "$peer/private.key.pub")"
    sed -E "s|^public_key = \"[^\"]*\"|public_key = \"$key\"|" "$here/$me.toml" >"$me/$me.toml"
done
for me in member-a member-b; do
    "$privnet" check --config "$me/$me.toml"
done
echo "generate.sh: the example set is in $out (ca/, member-a/, member-b/)"
