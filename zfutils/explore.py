"""Interactive exploration of the embeddings (notebook 05, JupyterLab): choose a backbone, an
embedding (inpainting-only or refined) and a 2-D reduction; the scatter shows identities; picking
a point (a click with `%matplotlib widget`, or the image list) shows its image, masks and the
Grad-CAM of the backbone's deep classifier. Everything is computed on demand and cached, and it
also runs headless (nbval), where nothing is clicked."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import torch
import yaml

from zfutils import cluster, config, paths
from zfutils.data.build import load_prepared
from zfutils.embed import load_embeddings
from zfutils.plots.prepare_dataset import overlay_masks

KINDS = {"inpainting only": (paths.INPAINT_PATTERNS, "embeddings.npz"),
         "refined (deep)": (paths.FINETUNE_CLASSIFIER, "embeddings_ref.npz"),
         "match profile": (paths.FINETUNE_CLASSIFIER, "embeddings_match.npz")}  # matching methods (sift, orb)


def available_embeddings(preset: str, backbones, run_seed: int | None = None) -> dict[tuple[str, str], object]:
    """(backbone, kind) -> embeddings file, for those that exist (of training seed `run_seed`
    when the pipeline ran several)."""
    found = {(b, kind): paths.stage_dir(preset, stage, b, run_seed) / name
             for b in backbones for kind, (stage, name) in KINDS.items()}
    return {key: path for key, path in found.items() if path.is_file()}


class EmbeddingExplorer:
    def __init__(self, cfg: dict, backbones):
        import ipywidgets as w

        self.cfg, self.preset = cfg, cfg["preset"]
        self.files = available_embeddings(self.preset, backbones, cfg.get("run_seed"))
        if not self.files:
            raise FileNotFoundError(f"no embeddings for preset {self.preset}; run stages 02 and 03 first")
        self.data = load_prepared(cfg)
        self._coords, self._models = {}, {}
        first = next(iter(self.files))
        self.backbone = w.Dropdown(options=sorted({b for b, _ in self.files}), value=first[0], description="backbone")
        self.kind = w.Dropdown(options=list(KINDS), value=first[1], description="embedding")
        self.method = w.Dropdown(options=list(cfg["cluster"]["methods"]), description="reduction")
        self.image = w.Dropdown(options=[], description="image")
        self.plot, self.detail = w.Output(), w.Output()
        for control in (self.backbone, self.kind, self.method):
            control.observe(lambda _: self.draw(), names="value")
        self.image.observe(lambda change: self.select(change["new"]), names="value")
        self.widget = w.VBox([w.HBox([self.backbone, self.kind, self.method]), self.plot, self.image, self.detail])

    def current(self) -> dict | None:
        path = self.files.get((self.backbone.value, self.kind.value))
        return load_embeddings(path) if path is not None else None

    def coordinates(self, emb: dict) -> np.ndarray:
        key = (self.backbone.value, self.kind.value, self.method.value)
        if key not in self._coords:
            self._coords[key] = cluster.project(emb["embeddings"], self.method.value, seed=config.training_seed(self.cfg),
                                                scaling=self.cfg["cluster"]["scaling"])
        return self._coords[key]

    def draw(self) -> None:
        """Scatter of the current choice, coloured by identity; clicking a point selects it."""
        emb = self.current()
        self.plot.clear_output(wait=True)
        with self.plot:
            if emb is None:
                print(f"{self.backbone.value} has no {self.kind.value} embeddings (baselines do not inpaint)")
                return
            xy = self.coordinates(emb)
            fig, ax = plt.subplots(figsize=(5.5, 4))
            for ident in sorted(set(emb["identity"])):
                pick = emb["identity"] == ident
                ax.scatter(xy[pick, 0], xy[pick, 1], s=12, label=ident, picker=True)
            ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
            ax.set_title(f"{self.backbone.value}, {self.kind.value}, {self.method.value}", fontsize=9)
            fig.canvas.mpl_connect("button_press_event", lambda event: self._clicked(event, xy, emb))
            fig.tight_layout()
            plt.show()
        self.image.options = list(emb["image_id"])

    def _clicked(self, event, xy: np.ndarray, emb: dict) -> None:
        if event.xdata is None:
            return
        nearest = int(np.argmin((xy[:, 0] - event.xdata) ** 2 + (xy[:, 1] - event.ydata) ** 2))
        self.image.value = str(emb["image_id"][nearest])

    def classifier(self, backbone: str):
        """The backbone's deep classifier from stage 03 (best epoch), for Grad-CAM."""
        if backbone not in self._models:
            from zfutils.models import get
            from zfutils.train.checkpoint import load_checkpoint
            from zfutils.train.classifier_setup import build_classifier

            run = paths.run_stage_dir(self.cfg, paths.FINETUNE_CLASSIFIER, backbone)
            if not (run / "deep" / "checkpoints" / "best.pt").is_file():
                raise FileNotFoundError(run / "deep" / "checkpoints" / "best.pt")
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            classes = json.loads((run / "metrics.json").read_text())["deep"]["classes"]
            model = build_classifier(cfg, get(backbone), None, len(classes))
            model.load_state_dict(load_checkpoint(run / "deep" / "checkpoints" / "best.pt")["model"])
            self._models[backbone] = (model.eval(), classes)
        return self._models[backbone]

    def _cam_panel(self, image: np.ndarray, identity: str) -> list:
        """The deep classifier's Grad-CAM of `image` for its true identity, as a panel; none (and a
        line saying why) for a matching method or a missing classifier."""
        from zfutils.cam import grad_cams, overlay
        from zfutils.matching import is_matcher

        backbone = self.backbone.value
        if is_matcher(backbone):
            print(f"{backbone} learns nothing, so there is no Grad-CAM; stage 03 shows where its verified matches lie")
            return []
        try:
            model, classes = self.classifier(backbone)
        except FileNotFoundError as err:
            print(f"no Grad-CAM: the deep classifier of {backbone} is missing ({err}); run stage 03")
            return []
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255
        method = self.cfg["classify"]["cam_method"]
        cam = grad_cams(model, model.cam_layer, tensor, [classes.index(identity)], method=method)[0]
        return [(overlay(image / 255.0, cam), f"{method} ({backbone}, deep)")]

    def select(self, image_id: str | None) -> None:
        """Show the image, its fish outline and pattern mask, and the deep classifier's Grad-CAM."""
        if not image_id:
            return
        self.detail.clear_output(wait=True)
        with self.detail:
            row = self.data.meta.set_index("image_id").loc[image_id]
            image = self.data.image(image_id)
            panels = [(image, f"{row['identity']} · {row['session']}")]
            if self.data.has_masks:
                panels.append((overlay_masks(image, self.data.mask(image_id, "fish"), self.data.mask(image_id, "pattern")),
                               "fish outline · pattern"))
            panels += self._cam_panel(image, str(row["identity"]))
            fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3))
            for ax, (shown, title) in zip(np.atleast_1d(axes), panels):
                ax.imshow(shown)
                ax.set_title(title, fontsize=8)
                ax.axis("off")
            fig.tight_layout()
            plt.show()
