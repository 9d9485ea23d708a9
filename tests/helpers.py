"""Small data sets the tests write themselves, in the project's format."""
from pathlib import Path

import numpy as np

from zfutils.data.format import DatasetWriter


def write_tiny_dataset(root: Path, identities=3, sessions=4, per_session=3, size=16, masks=True) -> Path:
    """Images whose colour encodes identity, a square fish and a stripe pattern inside it."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, with_masks=masks) as writer:
        for i in range(identities):
            for s in range(sessions):
                for f in range(per_session):
                    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                    image[..., i % 3] += 150
                    fish = np.zeros((size, size), bool)
                    fish[size // 4: 3 * size // 4, size // 8: 7 * size // 8] = True
                    pattern = fish.copy()
                    pattern[:, : size // 4] = False
                    writer.add(f"fish_{i}_s{s}_{f:04d}", image, fish if masks else None, pattern if masks else None,
                               identity=f"fish_{i}", session=f"s{s}", frame=f, source="test")
        writer.commit({"source": "test", "image_size": size, "masks": "exact" if masks else "none"})
    return root
