"""A JSON-lines log: one record per line, appended and flushed at once, so a crash keeps every
line written before it and a resumed run continues the same file (a last line cut short by a
killed process is dropped on reading). Under torchrun only rank 0 writes it (the others' calls do
nothing), so a line is never written twice."""
from __future__ import annotations

import json
import math
from pathlib import Path

from zfutils import atomic
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
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if number == len(lines):  # cut short by a process killed while writing it
                    break
                raise ValueError(f"{self.path}, line {number}: not a JSON record ({err}); the log is damaged: "
                                 "delete the run folder to train afresh") from None
        return records

    def truncate_after(self, iteration: int) -> None:
        """Drop records past `iteration` (written after the checkpoint a run resumes from)."""
        if not distributed.is_main():
            return
        kept = [r for r in self.read() if r.get("iteration", 0) <= iteration]
        atomic.write_text(self.path, "".join(json.dumps(r, default=_plain) + "\n" for r in kept))


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
