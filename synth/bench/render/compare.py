"""Two recovery runs of the bench side by side: what each recovered and how long it took.

"None slower than today" is a claim about two measurements, so it is made from the two
``bench.json`` files, never from memory: per target and configuration present in both, the
earlier and the later verdict and wall time and their ratio, and the load average each run
started at (a shared machine can make the same code several times slower).

``python -m mechsynth.synth.bench.render.compare BEFORE.json AFTER.json`` prints the table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mechsynth.synth.bench.render.table import table


def _rows(results: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(r["target"], r["mode"]): r for r in results["recovery"]["rows"]}


def _verdict(row: Mapping[str, Any]) -> str:
    return "**yes**" if row["recovered"] else "no"


def _load(results: Mapping[str, Any]) -> str:
    load = (results.get("machine") or {}).get("load_average_at_start") or []
    return ", ".join(f"{x:.2f}" for x in load) or "?"


def compare_recovery(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Markdown: a table over the (target, configuration) pairs both runs have, in the later run's order."""
    old, new = _rows(before), _rows(after)
    labels = {**before["recovery"].get("mode_labels", {}), **after["recovery"].get("mode_labels", {})}
    cells = []
    for key, row in new.items():
        if key not in old:
            continue
        prev = old[key]
        ratio = row["seconds"] / prev["seconds"] if row.get("seconds") and prev.get("seconds") else None
        cells.append([key[0], labels.get(key[1], key[1]), _verdict(prev), _verdict(row),
                      prev.get("seconds"), row.get("seconds"), ratio, row.get("why") or ""])
    both = [k for k in new if k in old]
    gained = [k for k in both if new[k]["recovered"] and not old[k]["recovered"]]
    lost = [k for k in both if old[k]["recovered"] and not new[k]["recovered"]]
    head = [
        f"Before: `{before.get('command')}` at commit `{(before.get('git') or {}).get('commit')}` on "
        f"{before.get('created')} (load average at start {_load(before)}). After: `{after.get('command')}` "
        f"at commit `{(after.get('git') or {}).get('commit')}` on {after.get('created')} (load average at "
        f"start {_load(after)}). Same budget per run: {before['recovery'].get('budget_seconds')} s before, "
        f"{after['recovery'].get('budget_seconds')} s after.",
        "",
        f"Recovered in both runs' pairs: {sum(old[k]['recovered'] for k in both)} before, "
        f"{sum(new[k]['recovered'] for k in both)} after; gained: "
        f"{', '.join(f'{t} [{m}]' for t, m in gained) or 'none'}; lost: "
        f"{', '.join(f'{t} [{m}]' for t, m in lost) or 'none'}.",
        "",
    ]
    body = table(["target", "configuration", "recovered before", "recovered after", "s before", "s after",
                  "after / before", "why not (after)"], cells)
    return "\n".join(head) + "\n" + body + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m mechsynth.synth.bench.render.compare BEFORE.json AFTER.json", file=sys.stderr)
        return 2
    try:
        before, after = (json.loads(Path(p).read_text()) for p in argv)
        print(compare_recovery(before, after), end="")
    except (OSError, ValueError, KeyError) as e:
        print(f"compare: cannot read a recovery result: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
