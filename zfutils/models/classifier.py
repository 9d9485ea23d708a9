"""The study's classifier: a backbone's isolated encoder (reading the image with an all-zero mask,
in the backbone's convention) + global average pooling + one head.

Heads: `linear` (softmax + cross-entropy, as the study) or `arcface` (sub-center ArcFace with an
angular margin, as MiewID, from pytorch-metric-learning): its logits are scaled cosines to the
class centres, so prediction, metrics and Grad-CAM treat both heads alike.

Neck: pooled features of different encoders differ in scale by orders of magnitude (DeepFillV2's
gated convolutions shrink the signal layer by layer), and a linear head on tiny features barely
moves per step, so by default a parameter-free layer norm standardises each pooled vector before
the head (per image, so training and evaluation see the same transform; a batch-norm neck's
running statistics lag behind in short fine-tuning). `neck="none"` is the study's head.
Embeddings for retrieval and clustering are the pooled features before the neck.
"""
from __future__ import annotations

import torch
from torch import nn

from zfutils.models.registry import Backbone

HEADS = ("linear", "arcface")
NECKS = ("layernorm", "none")


class Classifier(nn.Module):
    def __init__(self, *, backbone: Backbone, generator: nn.Module, n_classes: int, embed_dim: int,
                 head: str = "linear", arcface: dict | None = None, neck: str = "layernorm"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown classification head '{head}'; known heads: {', '.join(HEADS)}")
        if neck not in NECKS:
            raise ValueError(f"unknown classification neck '{neck}'; known necks: {', '.join(NECKS)}")
        self.neck = nn.LayerNorm(embed_dim, elementwise_affine=False) if neck == "layernorm" else nn.Identity()
        self.backbone_name = backbone.name
        self.encoder = backbone.encoder(generator)  # shares the generator's parameters
        self.cam_layer = backbone.cam_layer(generator)
        self._encoder_input = backbone.encoder_input
        self.head_kind = head
        if head == "linear":
            self.head = nn.Linear(embed_dim, n_classes)
        else:
            from pytorch_metric_learning.losses import SubCenterArcFaceLoss

            opts = arcface or {}
            self.head = SubCenterArcFaceLoss(num_classes=n_classes, embedding_size=embed_dim,
                                             margin=opts.get("margin", 28.6), scale=opts.get("scale", 64),
                                             sub_centers=opts.get("sub_centers", 3))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """One vector per image: the encoder's feature map, average-pooled."""
        zeros = torch.zeros_like(image[:, :1])
        return self.encoder(self._encoder_input(image, zeros)).mean(dim=(2, 3))

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        z = self.neck(embedding)
        return self.head(z) if self.head_kind == "linear" else self.head.get_logits(z)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(image))

    def loss(self, image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss and logits: cross-entropy (linear) or the ArcFace loss with its margin."""
        return self.loss_on_embedding(self.embed(image), labels)

    def loss_on_embedding(self, embedding: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss from pooled features already computed (a frozen encoder's, computed once)."""
        logits = self.logits(embedding)
        if self.head_kind == "linear":
            return nn.functional.cross_entropy(logits, labels), logits
        return self.head(self.neck(embedding), labels), logits

    def freeze_encoder(self) -> None:
        """Shallow mode: no encoder weight or batch-norm statistic may change."""
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()  # a frozen encoder stays frozen, batch norm included
        return self
