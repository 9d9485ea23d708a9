"""Stage 08 (notebooks/08_report.ipynb): gather every backbone's results into the study's Tables 1-4
plus retrieval, pattern-focus, classification and leakage tables, as CSV and Markdown under
figures/<preset>/. Best entries are bold and worst italic, as the study marks them; every table says
its split and chance level; a cell with several seeds reads mean ± std."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from zfutils import config, paths
from zfutils.cluster import DIRECTION
from zfutils.tables import Table, cell_mean, cell_std, finite_values, marked, row_label, stage_metrics

TABLE4_COLUMNS = {"ari": "AdjRand", "mi": "MutInfo", "nmi": "NMI", "silhouette": "Silhouette",
                  "davies_bouldin": "Davies-Bouldin", "calinski_harabasz": "Calinski-Harabasz"}


MATCHING = "matching"  # the one mode of a method without training (zfutils.matching.MODE)
UNIFORM_MAP = "uniform map (area)"  # the pattern-focus table's reference row


def _label(backbone: str, m03: dict) -> str:
    """Row label; a backbone that started from random weights, or learns nothing at all (a
    matching method), says so in every table."""
    runs = m03.get(backbone, {})
    return row_label(backbone, (runs.get("deep") or runs.get(MATCHING) or {}).get("init", {}).get("init"))


def _row(label: str, mode: str) -> str:
    return label if mode == MATCHING else f"{label} {mode}"


def _split_note(cfg: dict, chance: float | None) -> str:
    rule = cfg["split"]["classify"]
    why = {"random": "random split of images, as the study (near-duplicate frames can sit on both sides)",
           "session": "recording sessions kept apart", "open": "held-out individuals"}[rule]
    chance_text = f"; chance = {chance:.3f}" if chance else ""
    return f"Split: {rule} ({why}){chance_text}."


def tables(cfg: dict, backbones) -> list[Table]:
    """Every report table that the available runs allow; with several training seeds, each cell
    holds one number per seed (shown as mean ± std)."""
    per_seed = [tables_of_seed(cfg, backbones, s) for s in config.training_seeds(cfg)]
    return per_seed[0] if len(per_seed) == 1 else merge_seeds(per_seed)


def merge_seeds(per_seed: list[list[Table]]) -> list[Table]:
    """One table per name whose cells list the seeds' values (None where a seed lacks one)."""
    merged = []
    for first in per_seed[0]:
        frames = [next((t.values for t in seed if t.name == first.name), None) for seed in per_seed]
        index = pd.Index([]).append([f.index for f in frames if f is not None]).unique()
        columns = pd.Index([]).append([f.columns for f in frames if f is not None]).unique()
        cell = lambda f, r, c: f.at[r, c] if f is not None and r in f.index and c in f.columns else None  # noqa: E731
        values = pd.DataFrame([[[cell(f, r, c) for f in frames] for c in columns] for r in index],
                              index=index, columns=columns, dtype=object)
        merged.append(dataclasses.replace(first, values=values,
                                          caption=f"{first.caption} Mean ± std over {len(per_seed)} training seeds."))
    return merged


def tables_of_seed(cfg: dict, backbones, run_seed: int | None) -> list[Table]:
    """The report tables of one training seed's runs."""
    preset = cfg["preset"]
    m02 = stage_metrics(preset, paths.INPAINT_PATTERNS, backbones, run_seed)
    m03 = stage_metrics(preset, paths.FINETUNE_CLASSIFIER, backbones, run_seed)
    m04 = stage_metrics(preset, paths.ABLATE_REGIONS, backbones, run_seed)
    m05 = stage_metrics(preset, paths.CLUSTER_EMBEDDINGS, backbones, run_seed)
    chance = next((m["chance"] for m in m03.values() if "chance" in m), None)
    note = _split_note(cfg, chance)
    out = []
    test_sizes = {_label(b, m03): m.get("ablation_set", {}).get("sizes", {}).get("test", 0) for b, m in m04.items()}
    ablation_test = max(test_sizes.values(), default=0)
    other_sizes = {row: n for row, n in test_sizes.items() if n and n != ablation_test}  # quick: SIFT's half set
    ablation_chance = next((m["chance"] for m in m04.values() if "chance" in m), chance)
    for number, mode in ((1, "deep"), (2, "shallow")):
        rows = {_label(b, m03): {r["condition"]: r["accuracy"] for r in m["results"] if r["mode"] in (mode, MATCHING)}
                for b, m in m04.items() if "results" in m}
        trained = any(r["mode"] == mode for m in m04.values() for r in m.get("results", []))
        if rows and trained:  # a mode no network was ablated in (quick: deep) has no table, matchers alone make none
            out.append(Table(f"table{number}_ablation_{mode}", f"Table {number}: test accuracy by visible region, {mode} fine-tuning",
                             pd.DataFrame(rows).T, f"{note} Best region per model in bold, worst in italic. Methods "
                             "without training (matching) appear in both tables with the same numbers.", mark="row",
                             chance=(ablation_chance, ablation_test), row_test_sizes=other_sizes or None))
    if m02:
        rows = {b: {"lowest validation generator loss": m["table3"]["best_val_g_loss"], "batch size": m["table3"]["batch_size"],
                    "iterations": m["table3"]["best_iteration"], "test L1 (hole)": m["test"]["test_l1"],
                    "test PSNR (hole)": m["test"]["test_psnr"], "test SSIM (hole)": m["test"]["test_ssim"]}
                for b, m in m02.items()}
        starts = ", ".join(f"{b} {m['init']['generator']}" for b, m in m02.items())
        out.append(Table("table3_inpainting", "Table 3: inpainting checkpoints used downstream", pd.DataFrame(rows).T,
                         f"Inpainting split 80:16:4 by source image. Initialised from: {starts}."))
    for split, key in (("test", "table4"), ("open", "table4_open")):
        rows = {name: {label: row.get(metric) for metric, label in TABLE4_COLUMNS.items()}
                for m in m05.values() for name, row in m.get(key, {}).items()}
        if rows:
            where = "classification test split" if split == "test" else "held-out individuals (open split)"
            caveat = "" if split == "test" else f" {_open_caveat(cfg)}"
            out.append(Table(f"table4_clustering_{split}", f"Table 4: k-means clustering of the embeddings, {where}",
                             pd.DataFrame(rows).T, f"{note}{caveat} k = number of individuals; mean over k-means seeds. "
                             "Best per column in bold, worst in italic.", mark="column",
                             higher_is_better={label: DIRECTION[metric] == "higher" for metric, label in TABLE4_COLUMNS.items()}))
    if m03:
        out += _classification_tables(m03, note, cfg["split"]["classify"] == "open")
    from zfutils.stages import transfer_species, vary_training_size  # here, not at the top: they import torch

    out += (vary_training_size.report_tables(cfg, backbones, run_seed)
            + transfer_species.report_tables(cfg, backbones, run_seed))
    shortcut = _shortcut_table(cfg, m04, backbones, note, run_seed)
    return out + ([shortcut] if shortcut else [])


SHORTCUT_CONDITIONS = ("pattern_only", "no_pattern", "background_only")


def _shortcut_table(cfg: dict, m04: dict, backbones, note: str, run_seed: int | None = None) -> Table | None:
    """The shortcut experiment: a preset that `extends` another and turns on the synthetic data's
    identity-correlated background and body shape, compared condition by condition with its base."""
    base, synth = config.preset_base(cfg["preset"]), cfg["data"]["synth"]
    if not base or not (synth["shortcut_background"] or synth["shortcut_body"]):
        return None
    m04_base = stage_metrics(base, paths.ABLATE_REGIONS, backbones, run_seed)
    rows = {}
    for b in [b for b in m04 if b in m04_base]:
        for mode in ("deep", "shallow"):
            acc = {run: {r["condition"]: r["accuracy"] for r in m["results"] if r["mode"] == mode}
                   for run, m in ((base, m04_base[b]), ("shortcuts", m04[b]))}
            if any(acc.values()):  # a mode neither run ablated (quick: shallow only) has no row
                rows[f"{b} {mode}"] = {f"{c} ({run})": acc[run].get(c) for c in SHORTCUT_CONDITIONS for run in acc}
    if not rows:
        return None
    knobs = [k for k in ("shortcut_background", "shortcut_body") if synth[k]]
    return Table("shortcut", f"Shortcut experiment: accuracy with and without {', '.join(knobs)}", pd.DataFrame(rows).T,
                 f"{note} '{base}': pattern-only identity; 'shortcuts': background and/or body shape also identify "
                 "the fish. A model that uses the pattern keeps its 'pattern only' accuracy and gains little on "
                 "'no pattern'; one that uses the shortcut gains on 'no pattern' and 'background only'.")


def _open_caveat(cfg: dict) -> str:
    """Held-out individuals are unseen only when the classifiers trained under the open split."""
    if cfg["split"]["classify"] == "open":
        return "The held-out individuals were not in any classifier's training."
    return (f"Under the {cfg['split']['classify']} split the classifiers trained on every individual, the open "
            "split's held-out ones included (other images of them): for truly unseen individuals run with "
            "split.classify: open.")


def _classification_tables(m03: dict, note: str, open_unseen: bool = False) -> list[Table]:
    cls, ret, focus, leak, shortcut = {}, {}, {}, {}, {}
    for b, m in m03.items():
        label = _label(b, m03)
        for mode in ("shallow", "deep", MATCHING):
            if mode not in m:
                continue
            r, row = m[mode], _row(label, mode)
            cls[row] = {"accuracy": r["test"]["accuracy"], "macro recall": r["test"]["macro_recall"],
                        "macro F1": r["test"]["macro_f1"]}
            held_out = "unseen, leave-one-out" if open_unseen else "held-out split, leave-one-out"
            for split, name in (("test", "known, gallery"), ("open", held_out)):
                got = r["retrieval"].get(split, {})
                ret[row] = {**ret.get(row, {}), **{f"{k} ({name})": got.get(k) for k in ("top1", "top5", "mAP")}}
            known = r["retrieval"].get("test", {})
            if known.get("top1_same_session") is not None:
                shortcut[row] = {"top-1 from own session": known["top1_same_session"],
                                 "chance": known.get("same_session_chance"), "top-1 same individual": known.get("top1")}
            last = r["history"][-1] if r["history"] else {}
            focus[row] = {"pattern": last.get("cam_pattern"), "fish outside pattern": last.get("cam_fish_outside_pattern"),
                          "background": last.get("cam_background"), "empty maps": last.get("cam_n_empty")}
        if m.get("leakage"):
            rnd, ses = m["leakage"].get("random"), m["leakage"].get("session")
            leak[label] = {"random split": rnd, "session split": ses,
                           "inflation": None if rnd is None or ses is None else rnd - ses}
    chance, n_test = _chance_and_test_size(m03)
    methods = sorted({m["cam_method"] for m in m03.values() if m.get("cam_method")})
    maps = f" Maps: {', '.join(methods)} (classify.cam_method)." if methods else ""
    areas = [m["cam_area"] for m in m03.values() if m.get("cam_area")]
    if areas:  # what a map spread evenly over the image would give: the level a focus reads against
        focus[UNIFORM_MAP] = {"pattern": float(np.mean([a["pattern"] for a in areas])),
                              "fish outside pattern": float(np.mean([a["fish_outside_pattern"] for a in areas])),
                              "background": float(np.mean([a["background"] for a in areas])), "empty maps": None}
    out = [Table("classification", "Classification: test metrics of the fine-tuned classifiers", pd.DataFrame(cls).T,
                 f"{note} Best per column in bold, worst in italic.", mark="column", chance=(chance, n_test),
                 accuracy_columns=("accuracy",)),
           Table("retrieval", "Retrieval: top-k and mAP of the classifiers' embeddings", pd.DataFrame(ret).T,
                 f"{note} Known individuals: test images query all other classification images, same individual and "
                 "session excluded; held-out: the open split's held-out individuals query each other, leave-one-out"
                 + ("." if open_unseen else " (under this split every individual was in training: see docs/splits.md)."),
                 mark="column"),
           Table("pattern_focus", "Pattern focus: share of class-activation mass at the last epoch", pd.DataFrame(focus).T,
                 f"{note} Fixed validation images; shares of pattern, rest of the fish and background add up to 1, "
                 f"averaged over the maps that are not empty (all zero).{maps} '{UNIFORM_MAP}': the regions' areas, "
                 "what a map spread evenly would give; a share above it is a focus. For matching methods: where the "
                 "verified matches' keypoints lie, against the best image of the same individual.",
                 count_columns=("empty maps",))]
    if shortcut:
        out.append(Table("session_shortcut", "Session shortcut: how often the nearest image is another fish of the "
                         "query's own recording session", pd.DataFrame(shortcut).T,
                         f"{note} Known individuals' test images as queries (gallery as in the retrieval table; the "
                         "query's own session-mates of the same fish are excluded, so a same-session neighbour is "
                         "always another fish). Chance: the share of the gallery from the query's session. Far above "
                         "chance, the embedding encodes the recording (tank, light, background) more than the fish."))
    if leak:
        out.append(Table("leakage", "Leakage check: shallow test accuracy, random vs session split", pd.DataFrame(leak).T,
                         "Same images and training; only the split differs. Inflation = random - session."))
    heads, starts = _head_comparison_table(m03, note), _pretraining_table(m03, note)
    return out + [t for t in (starts, heads) if t]


def _chance_and_test_size(m03: dict) -> tuple[float | None, int]:
    """Chance accuracy and the number of test images of stage 03 (from a test confusion matrix)."""
    chance = next((m["chance"] for m in m03.values() if "chance" in m), None)
    sizes = [int(np.sum(r["test"]["confusion"])) for m in m03.values() for mode, r in m.items()
             if isinstance(r, dict) and "confusion" in r.get("test", {})]
    return chance, max(sizes, default=0)


def _half_width(n: int) -> float:
    """The widest normal-approximation 95% half-width of an accuracy on `n` test images (at 0.5)."""
    return 1.96 * (0.25 / max(n, 1)) ** 0.5


def _pretraining_table(m03: dict, note: str) -> Table | None:
    """The study's central question: test accuracy from the backbone's starting weights (an
    inpainting checkpoint, or ImageNet) beside the same training from random weights."""
    rows = {}
    for b, m in m03.items():
        for mode, control in m.get("random_start", {}).items():
            if mode in m:
                start = m[mode]["init"]["init"]
                rows[f"{b} {mode}"] = {"pre-trained start": start, "accuracy": m[mode]["test"]["accuracy"],
                                       "random start": control["accuracy"],
                                       "difference": m[mode]["test"]["accuracy"] - control["accuracy"]}
    if not rows:
        return None
    chance, n_test = _chance_and_test_size(m03)
    values = pd.DataFrame(rows).T
    starts = sorted(set(values.pop("pre-trained start")))
    return Table("pretraining", "Pre-training against none: test accuracy from the starting weights and from random ones",
                 values, f"{note} Starting weights: {', '.join(starts)} (inpainting: the stage-02 checkpoint). The random "
                 "start trains identically (same data, epochs, seed, head); difference = pre-trained - random. On "
                 f"{n_test} test images one accuracy's 95% binomial interval is up to ±{_half_width(n_test):.2f} wide, "
                 "so a difference smaller than that is not evidence either way.",
                 chance=(chance, n_test), accuracy_columns=("accuracy", "random start"))


def _head_comparison_table(m03: dict, note: str) -> Table | None:
    """Stage 03's head comparison (classify.head_comparison): test accuracy per backbone, mode and
    pooling of the head's input, one number per training seed."""
    rows, n_test, seeds, chance = {}, set(), set(), None
    for b, m in m03.items():
        for r in m.get("head_comparison", []):
            rows.setdefault(_row(_label(b, m03), r["mode"]), {}).setdefault(r["pooling"], []).append(r["accuracy"])
            n_test.add(r["n_test"])
            seeds.add(r["seed"])
        chance = m.get("chance", chance)
    if not rows:
        return None
    return Table("head_comparison", "Head comparison: test accuracy by what the linear head reads", pd.DataFrame(rows).T,
                 f"{note} Mean ± std over {len(seeds)} training seeds. flatten: the encoder's whole feature map "
                 "flattened (the study's head, as the paper preset reads it); flatten GxG: the map averaged to a GxG "
                 "grid first; avg: global average pooling; gem: generalized-mean pooling. Best per row in bold, worst "
                 "in italic.", mark="row", chance=(chance, max(n_test)))


def key_figures(preset: str, size_figure=None, n: int = 5) -> list:
    """The figures the report notebook shows below the tables: the size study's (when it ran),
    then the embedding projections and the ablation bars of each backbone, at most `n`."""
    published = paths.figures_dir(preset)
    found = ([size_figure] if size_figure else []) + sorted(published.glob("*_projections.png")) \
        + sorted(published.glob("*_ablation_accuracy.png"))
    return found[:n]


def write(cfg: dict, backbones) -> list[Table]:
    """Write every table as CSV (numbers) and Markdown (marked, with caption) under
    figures/<preset>/, plus report.md with all of them."""
    target = paths.figures_dir(cfg["preset"])
    target.mkdir(parents=True, exist_ok=True)
    found = tables(cfg, backbones)
    parts = [f"# Report: preset {cfg['preset']}\n"]
    for t in found:
        t.values.map(cell_mean).to_csv(target / f"{t.name}.csv")
        if t.values.map(lambda v: len(finite_values(v)) > 1).any().any():  # several seeds: their spread beside the means
            t.values.map(cell_std).to_csv(target / f"{t.name}_std.csv")
        text = f"## {t.title}\n\n{marked(t).to_markdown(disable_numparse=True)}\n\n{t.full_caption()}\n"
        (target / f"{t.name}.md").write_text(text)
        parts.append(text)
    (target / "report.md").write_text("\n".join(parts))
    return found
