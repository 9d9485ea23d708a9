"""The report's tables: a `Table` of numbers (one per seed where several), its Markdown cells with
the best and worst marked and cells within noise of chance flagged, and the stage metrics the
tables are read from. Stages 06 and 07 build their own report tables with it."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zfutils import paths


@dataclass
class Table:
    name: str
    title: str
    values: pd.DataFrame        # numbers (or lists of numbers, one per seed)
    caption: str
    mark: str | None = None     # "row" or "column": where best/worst are marked
    higher_is_better: dict | bool = True
    chance: tuple[float, int] | None = None   # (chance accuracy, test images): cells within noise of chance get NEAR_CHANCE
    accuracy_columns: tuple[str, ...] | None = None   # the columns `chance` applies to; None: every column
    count_columns: tuple[str, ...] = ()   # columns of counts: whole numbers even where they are 0 (a mean keeps digits)
    row_test_sizes: dict | None = None    # {row: test images} for rows tested on another number than chance[1]

    def full_caption(self) -> str:
        """The caption, with what the near-chance mark means where the table has one."""
        if not (self.chance and self.chance[0] and self.chance[1]):
            return self.caption
        low, high = chance_range(*self.chance)
        ranges = {row: chance_range(self.chance[0], n) for row, n in (self.row_test_sizes or {}).items()}
        others = "".join(f"; {row}: {lo:.3f}-{hi:.3f} on its {self.row_test_sizes[row]}"
                         for row, (lo, hi) in ranges.items())
        return (f"{self.caption} {NEAR_CHANCE}: within noise of chance (a classifier guessing at {self.chance[0]:.3f} "
                f"scores {low:.3f}-{high:.3f} on {self.chance[1]} test images 95% of the time{others}).")


NEAR_CHANCE = "°"


def finite_values(value) -> list[float]:
    """The finite numbers in a cell: one number, or a list of them (one per seed, None if missing;
    nested where a cell's own seeds meet the pipeline's)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [v for item in value for v in finite_values(item)]
    return [float(value)] if np.isfinite(float(value)) else []


def chance_range(chance: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The accuracies a classifier that guesses at `chance` reaches on `n` test images with
    probability `level` (central binomial quantiles): a result inside is within noise of chance."""
    from scipy.stats import binom

    low, high = binom.ppf([(1 - level) / 2, (1 + level) / 2], n, chance)
    return float(low) / n, float(high) / n


def cell_mean(value) -> float:
    values = finite_values(value)
    return float(np.mean(values)) if values else np.nan


def cell_std(value) -> float:
    values = finite_values(value)
    return float(np.std(values)) if values else np.nan


def mean_std(value, digits: int = 3) -> str:
    """One number, or mean ± std of several (one per seed); NaN and missing read '–'."""
    values = finite_values(value)
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def marked(table: Table, digits: int = 3) -> pd.DataFrame:
    """Formatted cells, the best of each row or column in **bold** and the worst in *italic*."""
    means = table.values.map(cell_mean)
    text = table.values.map(lambda v: mean_std(v, digits))
    for column in means.columns:  # counts (batch size, iterations) read as integers
        values = means[column].dropna()
        whole = len(values) and (values == values.round()).all()
        if whole and (column in table.count_columns or (values.abs() >= 1).all()):
            text[column] = [mean_std(v, 0) for v in table.values[column]]
    if table.chance and table.chance[0] and table.chance[1]:
        ranges = pd.DataFrame([chance_range(table.chance[0], (table.row_test_sizes or {}).get(row, table.chance[1]))
                               for row in means.index], index=means.index, columns=["low", "high"])
        columns = [c for c in text.columns if table.accuracy_columns is None or c in table.accuracy_columns]
        for column in columns:
            near = means[column].between(ranges["low"], ranges["high"])
            text.loc[near, column] = text.loc[near, column] + NEAR_CHANCE
    if table.mark is None:
        return text
    lines = means.iterrows() if table.mark == "row" else means.items()
    for key, line in lines:
        higher = table.higher_is_better if isinstance(table.higher_is_better, bool) else \
            table.higher_is_better.get(key, True)
        line = line.dropna()
        if len(line) < 2 or line.max() == line.min():
            continue
        top, bottom = (line.max(), line.min()) if higher else (line.min(), line.max())
        cell = (lambda k: (key, k)) if table.mark == "row" else (lambda k: (k, key))
        for k in line.index[line == top]:      # ties are all marked, as the study's "region(s)"
            text.loc[cell(k)] = f"**{text.loc[cell(k)]}**"
        for k in line.index[line == bottom]:
            text.loc[cell(k)] = f"*{text.loc[cell(k)]}*"
    return text


def stage_metrics(preset: str, stage: str, backbones, run_seed: int | None = None) -> dict[str, dict]:
    """metrics.json of `stage` for each backbone that has one (of training seed `run_seed`)."""
    found = {}
    for b in backbones:
        path = paths.stage_dir(preset, stage, b, run_seed) / "metrics.json"
        if path.is_file():
            found[b] = json.loads(path.read_text())
    return found


def row_label(backbone: str, init: str | None) -> str:
    """A table's row label: a backbone that started from random weights, or learns nothing at all
    (a matching method), says so in every table."""
    return {"random": f"{backbone} (random init)", "none": f"{backbone} (no training)"}.get(init, backbone)
