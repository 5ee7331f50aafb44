"""Summarise a py-spy raw (collapsed stacks) profile: where the time goes, as text.

    .venv/bin/py-spy record -r 200 -f raw -o send.raw -- .venv/bin/python -m digest_mail send …
    .venv/bin/python benchmarks/profile_summary.py send.raw [--top 30]

Prints the functions with the most samples on the stack (inclusive) and at the top of
the stack (self), as percentages of all samples.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

# py-spy frames look like "function (path/to/file.py:123)"; the line number is dropped so
# one function's samples add up.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise(text: str, *, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} samples", "", f"inclusive (on the stack), top {top}:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", f"self (top of the stack), top {top}:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    sys.stdout.write(summarise(args.raw.read_text(encoding="utf-8"), top=args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
