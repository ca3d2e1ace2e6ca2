#!/usr/bin/env bash
# Prints the size of the release hydrate bundle (raw and gzip) that browsers download.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="${LEPTOS_SITE_ROOT:-target/site}/pkg"
[ -d "$pkg" ] || { echo "no $pkg: run 'cargo leptos build --release' first" >&2; exit 1; }
printf '%-36s %10s %10s\n' file raw gzip
for f in "$pkg"/*.wasm "$pkg"/*.js "$pkg"/*.css; do
  [ -f "$f" ] || continue
  printf '%-36s %10s %10s\n' "$(basename "$f")" "$(stat -c %s "$f")" "$(gzip -9c "$f" | wc -c)"
done
