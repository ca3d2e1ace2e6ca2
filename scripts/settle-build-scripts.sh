#!/usr/bin/env bash
# Usage: scripts/settle-build-scripts.sh PROFILE_DIR...   (e.g. "$CARGO_TARGET_DIR/debug")
#
# waproto's build script (the WhatsApp client's protobuf crate) writes whatsapp.local.desc into
# its OUT_DIR and also declares that file rerun-if-changed. On the first build the file is written
# after cargo's invoked.timestamp, so the next cargo command sees it as changed, reruns the script
# and recompiles waproto, wacore and whatsapp-rust: about 3 minutes on 2 cores, once per fresh
# build. The script rewrites the file only when its content changes, so dating it back to just
# before that run is safe: a real change still rewrites it (and so dirties it) as before.
set -euo pipefail
for profile_dir in "$@"; do
  for run_dir in "$profile_dir"/build/waproto-*/; do
    stamp="$run_dir/invoked.timestamp"
    desc="$run_dir/out/whatsapp.local.desc"
    [ -f "$stamp" ] && [ -f "$desc" ] || continue
    if [ "$desc" -nt "$stamp" ]; then
      touch -d "@$(( $(stat -c %Y "$stamp") - 1 ))" "$desc"
    fi
  done
done
