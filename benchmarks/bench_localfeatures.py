"""Cost (and accuracy) of local-feature re-identification on synthetic zebrafish, one CPU thread.

    python -m benchmarks.bench_localfeatures [--sizes 128 256 --methods sift orb --region pattern]

For each image size and method: every image queries all others (its same-fish same-session twins
left out, as retrieval does), keypoints restricted to `--region`. Prints keypoints per image, ms to
extract one gallery image, ms per query (extracting it, mirrored too, and matching it against the
gallery), ms per match of two feature sets alone, top-1 and mAP; writes
benchmarks/results/localfeatures.json (with the git commit that was measured). A query against a
gallery of G images costs about 2 extractions + 2 G matches (the query is matched mirrored too).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.measure import machine_info
from zfutils import localfeatures as lf
from zfutils.data.synth import SynthSpec, iter_samples
from zfutils.provenance import git_sha

RESULTS = Path(__file__).resolve().parent / "results" / "localfeatures.json"


def run(samples: list[dict], method: str, region: str | None) -> dict:
    ids, sessions = [s["identity"] for s in samples], [s["session"] for s in samples]
    images, names = [s["image"] for s in samples], [s["image_id"] for s in samples]
    masks = None if region is None else [s[f"{region}_mask"] for s in samples]
    index = lf.LocalFeatureIndex(method=method, progress=False).add(images, ids, masks, names)
    skip = lf.excluded_pairs(ids, sessions)
    scores = index.score(images, masks, names, skip=skip)
    metrics = lf.similarity_retrieval_metrics(scores.similarity, ids, sessions)
    cost = index.cost(scores)
    found = [f for f in index.gallery if f is not None]
    start, calls = time.perf_counter(), 0
    for a in found[:10]:  # matching alone: one call per pair and view (a mirrored query is a second view)
        for b in found:
            index._match(a, b)
            calls += 1
    return {**cost, "region": region or "all", "top1": metrics["top1"], "mAP": metrics["mAP"],
            "gallery_ms_per_image": 1000 * cost["gallery_seconds_per_image"],
            "ms_per_query": 1000 * cost["seconds_per_query"], "gallery_per_query": float((~skip).sum(axis=1).mean()),
            "ms_per_match": 1000 * (time.perf_counter() - start) / max(calls, 1), "mirror": index.mirror}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--methods", nargs="+", default=["sift", "orb"])
    parser.add_argument("--region", default="pattern", choices=["pattern", "fish", "none"])
    parser.add_argument("--individuals", type=int, default=6)
    parser.add_argument("--per-individual", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    region = None if args.region == "none" else args.region
    rows = []
    for size in args.sizes:
        spec = SynthSpec(individuals=args.individuals, per_individual=args.per_individual, sessions=args.sessions,
                         image_size=size, seed=args.seed)
        samples = list(iter_samples(spec))
        for method in args.methods:
            row = {"image_size": size, "images": len(samples), **run(samples, method, region)}
            rows.append(row)
            print(f"{size:4d} px {method:5s} {row['region']:8s}: {row['keypoints_per_gallery_image']:6.1f} keypoints/image,"
                  f" {row['gallery_ms_per_image']:6.1f} ms/gallery image, {row['ms_per_query']:7.1f} ms/query"
                  f" (against {row['gallery_per_query']:.0f}; {row['ms_per_match']:.2f} ms/match),"
                  f" top1 {row['top1']:.3f}, mAP {row['mAP']:.3f}")
    result = {"rows": rows, "threads": 1, "opencv": cv2.__version__, "numpy": np.__version__,
              "machine": machine_info(), "git_sha": git_sha()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
