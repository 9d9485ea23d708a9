"""Wall time of every stage run the pipeline has recorded, per stage x backbone, with totals.

    python -m benchmarks.bench_stages [--presets smoke,quick]

The pipeline writes runs/<preset>/[seed-<s>/][<backbone>/]<stage>/stamp.json with the seconds
its notebook took when it last ran (a stage skipped as up to date keeps its earlier figure), so
the table shows the latest run of every stage, which may come from different commits and days:
the JSON keeps each file's time. runs/ lives under ZF_WORKDIR, or the project root. Nothing is
run here. Writes benchmarks/results/stages.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pandas as pd

from zfutils import paths

RESULTS = Path(__file__).resolve().parent / "results" / "stages.json"
SHARED = "shared"  # the column of the stages that run once, not per backbone


def collect(preset: str, runs: Path | None = None) -> list[dict]:
    """One row per stamp.json under runs/<preset>/: stage, backbone (None for a shared stage),
    training seed (None unless the pipeline ran several), seconds and when it was written."""
    base = Path(runs) / preset if runs else paths.runs_dir(preset)
    rows = []
    for stamp in sorted(base.rglob("stamp.json")) if base.is_dir() else []:
        try:
            seconds = json.loads(stamp.read_text())["seconds"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            continue  # a stamp from before seconds were recorded, or one being written
        parts = stamp.parent.relative_to(base).parts
        seed = next((int(p.removeprefix("seed-")) for p in parts[:-1] if p.startswith("seed-")), None)
        owners = [p for p in parts[:-1] if not p.startswith("seed-")]
        written = dt.datetime.fromtimestamp(stamp.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
        rows.append({"preset": preset, "stage": parts[-1], "backbone": owners[-1] if owners else None, "seed": seed,
                     "seconds": round(float(seconds), 2), "written": written,
                     "path": str(stamp.relative_to(base.parent))})
    return rows


def _column(row: dict) -> str:
    name = row["backbone"] or SHARED
    return name if row["seed"] is None else f"{name} seed-{row['seed']}"


def wide(rows: list[dict]) -> pd.DataFrame:
    """Seconds per stage (rows) x backbone (columns, `shared` first), with a total row and column."""
    frame = pd.DataFrame(rows).assign(column=[_column(r) for r in rows])
    table = frame.pivot_table(index="stage", columns="column", values="seconds", aggfunc="sum")
    columns = sorted(table.columns, key=lambda c: (not c.startswith(SHARED), c))
    table = table[columns]
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table.columns.name = None
    return table


def summary(presets: list[str], runs: Path | None = None) -> dict:
    """Per preset: where its runs live, its rows and its total, or a note that it has none."""
    out = {}
    for preset in presets:
        rows = collect(preset, runs)
        where = str(Path(runs) / preset if runs else paths.runs_dir(preset))
        if not rows:
            out[preset] = {"runs_dir": where, "rows": [], "total_s": None,
                           "note": f"no stage runs recorded under {where}"}
            continue
        written = sorted(r["written"] for r in rows)
        out[preset] = {"runs_dir": where, "rows": rows, "total_s": round(sum(r["seconds"] for r in rows), 1),
                       "stages": len(rows), "written_from": written[0], "written_to": written[-1]}
    return out


def render(result: dict) -> str:
    """A Markdown table per preset (seconds), or its note."""
    parts = []
    for preset, entry in result.items():
        if not entry["rows"]:
            parts.append(f"{preset}: {entry['note']}")
            continue
        total_min = entry["total_s"] / 60
        table = wide(entry["rows"]).map(lambda v: "-" if pd.isna(v) else f"{v:.0f}")
        align = ["left"] + ["right"] * len(table.columns)
        parts.append(f"{preset}: {entry['stages']} stage runs, {entry['total_s']:.0f} s ({total_min:.1f} min) in all, "
                     f"written {entry['written_from']} .. {entry['written_to']} (seconds)\n"
                     + table.to_markdown(disable_numparse=True, colalign=align))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="smoke,quick", help="comma-separated presets to read")
    parser.add_argument("--runs", type=Path, default=None,
                        help="the runs/ folder (default: under ZF_WORKDIR or the project root)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    result = summary(presets, args.runs)
    print(render(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"presets": result}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
