"""Figures of the clustering stage: 2-D projections of embeddings coloured by individual."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def projection_grid(coords: dict, identities: dict, title: str = ""):
    """Rows: embeddings (e.g. `lama`, `ref-lama`); columns: methods (PCA, t-SNE, UMAP)."""
    names = list(dict.fromkeys(n for n, _ in coords))
    methods = list(dict.fromkeys(m for _, m in coords))
    fig, axes = plt.subplots(len(names), len(methods), figsize=(3.2 * len(methods), 3.0 * len(names)), squeeze=False)
    palette = dict(zip(sorted({i for ids in identities.values() for i in ids}), sns.color_palette("tab10", 10) * 10))
    for r, name in enumerate(names):
        ids = np.asarray(identities[name])
        for c, method in enumerate(methods):
            ax = axes[r, c]
            xy = coords[(name, method)]
            for ident in sorted(set(ids)):
                pick = ids == ident
                ax.scatter(xy[pick, 0], xy[pick, 1], s=9, color=palette[ident], label=ident)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} · {method.upper() if method != 'tsne' else 't-SNE'}", fontsize=8)
    axes[0, -1].legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left", markerscale=1.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
