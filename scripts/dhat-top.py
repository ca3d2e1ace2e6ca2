#!/usr/bin/env python3
"""Where the heap was at its peak, from a dhat-rs profile (`dhat-heap.json`).

    scripts/dhat-top.py dhat-heap.json [streams] [rows]

Groups the bytes live at the global peak (dhat's `gb`) by the first frame of each allocation's
stack that is not the allocator, the standard library's collections or a generic wrapper, and
prints the biggest groups — with bytes per stream when `streams` (how many were open) is given.
`scripts/bench.sh heap` runs `bench live` under dhat and then this.
"""
import json
import re
import sys
from collections import defaultdict

# Frames that say how memory was allocated, not what for.
PLUMBING = re.compile(
    r"^(\[root\]|dhat::|<dhat::|alloc::|core::|std::|<alloc::|<core::|<std::|hashbrown::|<hashbrown::"
    r"|bytes::|<bytes::|__rust|__rdl|tikv_jemalloc|_rjem|smallvec::|<smallvec::|tokio::util::"
    r"|<tokio::util::|tokio::runtime::task::|<tokio::runtime::task::|slab::|<slab::|\?\?\?)"
)


def function_of(frame: str) -> str:
    # "0x55d…: path::to::function (src/file.rs:12:5)" → "path::to::function"
    text = frame.split(": ", 1)[-1]
    text = re.sub(r"\s+\(.*\)$", "", text)
    return re.sub(r"::h[0-9a-f]{16}$", "", text)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    profile = json.load(open(sys.argv[1]))
    streams = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    frames = profile["ftbl"]
    total = 0
    blocks = 0
    by_site: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pp in profile["pps"]:
        gb, gbk = pp.get("gb", 0), pp.get("gbk", 0)
        if not gb:
            continue
        total += gb
        blocks += gbk
        names = [function_of(frames[i]) for i in pp["fs"]]
        site = next((n for n in names if not PLUMBING.match(n)), names[-1] if names else "?")
        by_site[site][0] += gb
        by_site[site][1] += gbk
    per = f", {total / 1024 / streams:.2f} KiB per stream" if streams else ""
    print(f"heap at its peak: {total / 1048576:.1f} MiB in {blocks} blocks{per}")
    print(f"{'bytes':>12} {'blocks':>8} {'per stream':>11}  allocated in")
    for site, (gb, gbk) in sorted(by_site.items(), key=lambda kv: -kv[1][0])[:rows]:
        per_stream = f"{gb / streams:>9.0f} B" if streams else ""
        print(f"{gb:>12,} {gbk:>8,} {per_stream:>11}  {site[:110]}")


if __name__ == "__main__":
    main()
