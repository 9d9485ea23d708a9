"""A JSON-lines log: one record per line, appended and flushed at once, so a crash keeps every
line written before it and a resumed run continues the same file. Under torchrun only rank 0
writes it (the others' calls do nothing), so a line is never written twice."""
from __future__ import annotations

import json
import math
from pathlib import Path

from zfutils.train import distributed


class JsonLinesLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **record) -> None:
        if not distributed.is_main():
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=_plain) + "\n")

    def clear(self) -> None:
        """Start the log afresh (a run that resumes nothing)."""
        if distributed.is_main():
            self.path.unlink(missing_ok=True)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, iteration: int) -> None:
        """Drop records past `iteration` (written after the checkpoint a run resumes from)."""
        if not distributed.is_main():
            return
        kept = [r for r in self.read() if r.get("iteration", 0) <= iteration]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
