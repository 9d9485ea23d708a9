"""Write a data set in the project's format from the command line.

    python -m zfutils.data synth --out DIR [--individuals N --per-individual M --size S --seed K]
    python -m zfutils.data aau --root DIR --out DIR [--size S --keep-occluded --keep-turning]
    python -m zfutils.data csv --csv FILE --out DIR [--size S --masks given|estimate|none]
    python -m zfutils.data folder --root DIR --out DIR [--size S]

Split columns follow the preset's split settings (--preset, default quick).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zfutils import config
from zfutils.data.build import prepare_dataset, summarize


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zfutils.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="source", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, type=Path, help="folder to write (replaced only when complete)")
    common.add_argument("--size", type=int, help="image side in pixels (default: the preset's)")
    common.add_argument("--seed", type=int)
    common.add_argument("--preset", default="quick", help="preset whose data and split settings apply")
    common.add_argument("--split", choices=["random", "session", "open"], help="the classification split to select")
    common.add_argument("--align", action=argparse.BooleanOptionalAction, default=None,
                        help="level, mirror, scale and centre every fish from its mask (default: the preset's data.align)")
    synth = sub.add_parser("synth", parents=[common], help="synthetic zebrafish")
    synth.add_argument("--individuals", type=int)
    synth.add_argument("--per-individual", type=int)
    synth.add_argument("--sessions", type=int)
    synth.add_argument("--family", choices=["stripes", "spots"])
    aau = sub.add_parser("aau", parents=[common], help="AAU Zebrafish Re-Identification data set")
    aau.add_argument("--root", required=True, type=Path)
    aau.add_argument("--keep-occluded", action="store_true")
    aau.add_argument("--keep-turning", action="store_true")
    aau.add_argument("--masks", choices=["estimate", "none"])
    csv = sub.add_parser("csv", parents=[common], help="CSV of path, identity[, fish_mask, pattern_mask, session]")
    csv.add_argument("--csv", required=True, type=Path)
    csv.add_argument("--masks", choices=["given", "estimate", "none"])
    folder = sub.add_parser("folder", parents=[common], help="one sub-folder of images per individual")
    folder.add_argument("--root", required=True, type=Path)
    folder.add_argument("--masks", choices=["estimate", "none"])
    return parser


def overrides_from(args: argparse.Namespace) -> dict:
    """Translate command-line flags into dotted config overrides (unset flags leave the preset's)."""
    wanted = {
        "data.source": args.source, "data.image_size": args.size, "seed": args.seed, "split.classify": args.split,
        "data.path": str(getattr(args, "root", None) or getattr(args, "csv", None) or "") or None,
        "data.masks": getattr(args, "masks", None), "data.align": args.align,
        "data.synth.individuals": getattr(args, "individuals", None),
        "data.synth.per_individual": getattr(args, "per_individual", None),
        "data.synth.sessions": getattr(args, "sessions", None),
        "data.synth.family": getattr(args, "family", None),
        "data.aau.keep_occluded": getattr(args, "keep_occluded", None) or None,
        "data.aau.keep_turning": getattr(args, "keep_turning", None) or None,
    }
    return {k: v for k, v in wanted.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config.resolve(args.preset, None, overrides_from(args))
        data = prepare_dataset(cfg, root=args.out, force=True)
    except (config.ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    facts = summarize(data)
    print(f"wrote {facts['n_images']} images of {facts['n_identities']} individuals to {data.root} "
          f"(masks: {facts['masks']}; splits: {', '.join(k for k in facts['splits'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
