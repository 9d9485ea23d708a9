"""The synthetic data set as a stream of samples and as a data set on disk.

Images are grouped in sessions (one tank recording each, every individual in every session) and
each image's randomness is seeded by (seed, individual, session, frame), so any single image can
be re-rendered alone and the stream does not depend on iteration order.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from . import render, scene
from .individuals import Individual, make_individuals
from .spec import SynthSpec


def make_sessions(spec: SynthSpec) -> list[scene.Session]:
    return [scene.make_session(spec.seed, s) for s in range(spec.sessions)]


def render_sample(spec: SynthSpec, individual: Individual, session: scene.Session, frame: int,
                  coords: bool = False) -> dict:
    """Image `frame` of `individual` in `session`, with masks, pose fields and (optionally) the
    texture coordinates `u`, `v` of each visible patterned pixel (NaN elsewhere)."""
    rng = np.random.default_rng([spec.seed, individual.index, session.index, frame, 0x1A6E])
    pinned = spec.shortcut_body
    params = render.sample_params(
        rng, spec.image_size, session, shape=individual.body if pinned else None,
        size_factor=individual.size if pinned else 1.0,
        occlusion=spec.occlusion, noise=spec.noise, blur=spec.blur)
    backdrop = None
    if spec.shortcut_background:
        key = ("identity", individual.index, spec.image_size)
        if key not in session.cache:
            session.cache[key] = scene.identity_backdrop(spec.seed, individual.index, spec.image_size)
        backdrop = session.cache[key]
    out = render.render(individual.levels, params, session, backdrop=backdrop, coords=coords)
    pose = params.pose
    out.update(
        image_id=f"{individual.identity}_{session.name}_{frame:04d}", identity=individual.identity,
        session=session.name, frame=int(frame), source="synth", flip=bool(pose.flip),
        angle=round(float(pose.angle), 4), scale=round(pose.length / spec.image_size, 4),
        bend=round(float(pose.bend), 4), occluder=params.occluder.kind if params.occluder else "none")
    return out


def iter_samples(spec: SynthSpec, individuals: list[Individual] | None = None) -> Iterator[dict]:
    """Every sample of `spec`, session by session; pass `individuals` to reuse their patterns."""
    if individuals is None:
        individuals = make_individuals(spec)
    for session in make_sessions(spec):
        for ind in individuals:
            for frame in range(spec.frames(ind.index, session.index)):
                yield render_sample(spec, ind, session, frame)


def write_synthetic(spec: SynthSpec, out) -> Path:
    """Render the whole data set into `out` in the common on-disk format; returns its root."""
    from zfutils.data.format import DatasetWriter

    individuals = make_individuals(spec)
    total = sum(spec.frames(i.index, s) for i in individuals for s in range(spec.sessions))
    with DatasetWriter(Path(out)) as writer:
        for sample in tqdm(iter_samples(spec, individuals), total=total, desc="synth", unit="img"):
            meta = {k: v for k, v in sample.items() if k not in ("image_id", "image", "fish_mask", "pattern_mask")}
            writer.add(sample["image_id"], sample["image"], sample["fish_mask"], sample["pattern_mask"], **meta)
        return writer.commit(info={"source": "synth", "image_size": spec.image_size, "masks": "exact",
                                   "spec": dataclasses.asdict(spec)})
