"""Embeddings from an isolated encoder: the encoder reads the image with an all-zero mask in the
backbone's own convention (as the study), and its feature map becomes one vector per image by the
classifier's pooling (`classify.pooling`: flattened, as the study's head reads it, or pooled), so
the inpainting-only embeddings live in the space the classification head starts from. Saved with
ids and labels for the clustering stage. A trained classifier's embeddings and their retrieval
scores come from here too."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from zfutils import atomic
from zfutils.data.format import StoredDataset
from zfutils.data.torchsets import ClassificationSet
from zfutils.models.classifier import Classifier
from zfutils.models.pooling import make_pooling
from zfutils.models.registry import Backbone
from zfutils.retrieval import retrieval_metrics


@torch.no_grad()
def embed(backbone: Backbone, generator: nn.Module, data, batch_size: int = 32, device: str = "cpu", *,
          pooling: str = "avg", grid: int | None = None) -> np.ndarray:
    """N x D float32 embeddings of the images of `data` (a ClassificationSet or similar), the
    feature map pooled by `pooling` (zfutils.models.pooling.make_pooling; GeM at its starting p)."""
    encoder = backbone.encoder(generator).eval().to(device)
    pool = make_pooling(pooling, grid=grid).to(device)
    out = []
    for batch in tqdm(DataLoader(data, batch_size=batch_size, shuffle=False), desc=f"embed {backbone.name}", leave=False):
        image = batch["image"].to(device)
        features = encoder(backbone.encoder_input(image, torch.zeros_like(image[:, :1])))
        out.append(pool(features).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def save_embeddings(path: Path, embeddings: np.ndarray, data, **info) -> Path:
    """embeddings.npz: `embeddings`, `image_id`, `identity`, `label` (index into `classes`), `classes`."""
    rows = data.rows
    with atomic.replacing(path) as fh:  # a later stage never reads half a file
        np.savez_compressed(fh, embeddings=embeddings, image_id=rows["image_id"].to_numpy(str),
                            identity=rows["identity"].to_numpy(str),
                            label=np.array([data.class_index[i] for i in rows["identity"]], dtype=np.int64),
                            classes=np.array(data.classes, dtype=str), **{k: np.asarray(v) for k, v in info.items()})
    return Path(path)


def load_embeddings(path: Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the stage that writes it (02 for inpainting-only "
                                "embeddings, 03 for refined ones) first")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@torch.no_grad()
def embed_set(model: Classifier, data, batch_size: int, device: str) -> np.ndarray:
    """N x D embeddings of `data` by a classifier: what its head reads (zfutils.models.classifier)."""
    model.eval()
    out = [model.embed(b["image"].to(device)).cpu() for b in torch.utils.data.DataLoader(data, batch_size=batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def retrieval_on(model: Classifier, data: StoredDataset, column: str, protocol: str, cfg: dict, device: str) -> dict:
    """Retrieval with this model's embeddings. `gallery`: the test images of split `column` query
    every other classification image (the reference images of known individuals); `loo`: the test
    images query each other (held-out individuals, who have no reference images)."""
    rows = ClassificationSet(data, "test" if protocol == "loo" else ("train", "val", "test"), column=column)
    if len(rows) < 2:
        return {"n_queries": 0, "protocol": protocol}
    vectors = embed_set(model, rows, cfg["embed"]["batch_size"], device)
    queries = None if protocol == "loo" else (rows.rows[column] == "test").to_numpy()
    out = retrieval_metrics(vectors, rows.rows["identity"].to_numpy(), rows.rows["session"].to_numpy(),
                            ks=tuple(cfg["classify"]["retrieval_ks"]), queries=queries)
    return {**out, "protocol": protocol}
