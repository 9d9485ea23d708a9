"""The study's classifier: a backbone's isolated encoder (reading the image with an all-zero mask,
in the backbone's convention) + pooling + one head.

Pooling (zfutils/models/pooling.py): `flatten` (the whole feature map flattened, optionally
averaged to a grid first: the study's reading, which keeps where each stripe break sits), `avg`
(global average pooling) or `gem` (generalized mean with a learnable p, as MiewID; p is an
encoder parameter: it trains in deep mode and stays at 3 in shallow mode).

Heads: `linear` (softmax + cross-entropy, as the study), `arcface` (sub-center ArcFace with one
angular margin, from pytorch-metric-learning) or `arcface_dynamic` (sub-center ArcFace with
per-class margins from the training class counts, as MiewID; zfutils/models/arcface.py; the
counts come as `class_counts` or `set_class_counts`, equal counts until then). Their logits are
scaled cosines to the class centres, so prediction, metrics and Grad-CAM treat all heads alike.

Neck: pooled features of different encoders differ in scale by orders of magnitude (DeepFillV2's
gated convolutions shrink the signal layer by layer), and a linear head on tiny features barely
moves per step. The default neck, `standardize`, is a fixed per-dimension standardisation with
the mean and variance of the training images' pooled vectors (a batch norm without affine
weights kept in eval mode, so training and evaluation see the same transform; its statistics
are estimated by the trainer before training and after every deep epoch, as the BNNeck of
re-identification practice; its variance floor is relative, see Standardize). `layernorm`
standardises each pooled vector on its own: it keeps the large mean profile every image shares
and scales the differences between images down (with a randomly initialised AOT-GAN encoder a
logistic regression reaches 0.19 test accuracy on 6 fish after it, 0.31 after per-dimension
standardisation), which left stage 03's heads at chance. `none` is the study's head.
Embeddings for retrieval and clustering are the pooled (or flattened) features before the neck,
so they are what the head reads.
"""
from __future__ import annotations

import torch
from torch import nn

from zfutils.models.arcface import SubCenterArcFaceDynamic
from zfutils.models.pooling import POOLINGS, GeM, PooledEncoder, feature_map_shape, make_pooling, pooled_dim
from zfutils.models.registry import Backbone

HEADS = ("linear", "arcface", "arcface_dynamic")
NECKS = ("standardize", "layernorm", "none")


class Standardize(nn.BatchNorm1d):
    """Per-dimension standardisation with fixed statistics (a batch norm's running mean and
    variance, no affine weights), whose variance floor is relative: a fraction `floor` of the
    mean variance over dimensions. An absolute eps cannot serve every encoder: pooled features
    of some vary by 1e-4 (variance 1e-8), which batch norm's default eps (1e-5) flattens, while a
    tiny eps amplifies a dimension that was dead (variance 0) on the calibration images by
    orders of magnitude: InceptionV3's ReLU channels dead in eval mode come alive in deep
    training's train-mode batch norm, and a 1e-12 eps scaled them to 2e6 (batch losses of 2e4).
    Train mode only accumulates statistics (zfutils.train.batchnorm.recalibrate)."""

    keep_under_sync_batchnorm = True  # SyncBatchNorm would drop the relative floor (zfutils.train.distributed)

    def __init__(self, dim: int, floor: float = 1e-3):
        super().__init__(dim, eps=1e-12, affine=False)
        self.floor = floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        var = self.running_var
        scale = torch.rsqrt(var + self.floor * var.mean() + torch.finfo(var.dtype).tiny)
        return (x - self.running_mean) * scale


class Classifier(nn.Module):
    def __init__(self, *, backbone: Backbone, generator: nn.Module, n_classes: int, embed_dim: int,
                 head: str = "linear", arcface: dict | None = None, neck: str = "standardize", pooling: str = "avg",
                 class_counts=None, flatten_grid: int | None = None, image_size: int | None = None):
        """`embed_dim` is the encoder map's channel count; with `pooling="flatten"` the head reads
        C*H*W numbers (C*grid*grid with `flatten_grid`), and the whole map's H and W come from
        running the encoder once on an `image_size` image."""
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown classification head '{head}'; known heads: {', '.join(HEADS)}")
        if neck not in NECKS:
            raise ValueError(f"unknown classification neck '{neck}'; known necks: {', '.join(NECKS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown classification pooling '{pooling}'; known poolings: {', '.join(POOLINGS)}")
        self.backbone_name = backbone.name
        self.pooling = pooling
        self.encoder = backbone.encoder(generator)  # shares the generator's parameters
        if pooling == "flatten":
            if flatten_grid is None and image_size is None:
                raise ValueError("pooling 'flatten' over the whole feature map needs image_size (the map's height "
                                 "and width set the head's input size), or set flatten_grid")
            map_shape = ((embed_dim, 1, 1) if flatten_grid is not None
                         else feature_map_shape(self.encoder, backbone.encoder_input, image_size))
            embed_dim = pooled_dim(pooling, map_shape, flatten_grid)
        self.embed_dim = embed_dim
        if pooling == "gem":
            self.encoder = PooledEncoder(self.encoder, GeM(p=3.0))
            self.pool = nn.Identity()  # GeM is the encoder's (see zfutils/models/pooling.py)
        else:
            self.pool = make_pooling(pooling, grid=flatten_grid)
        self.neck = {"standardize": lambda: Standardize(embed_dim),
                     "layernorm": lambda: nn.LayerNorm(embed_dim, elementwise_affine=False),
                     "none": nn.Identity}[neck]()
        self.cam_layer = backbone.cam_layer(generator)
        self._encoder_input = backbone.encoder_input
        self.head_kind = head
        if head == "linear":
            self.head = nn.Linear(embed_dim, n_classes)
        elif head == "arcface_dynamic":
            opts = arcface or {}
            self.head = SubCenterArcFaceDynamic(  # margin_max falls back to the one-margin head's `margin`
                n_classes=n_classes, embed_dim=embed_dim, scale=opts.get("scale", 64),
                sub_centers=opts.get("sub_centers", 3), margin_min=opts.get("margin_min", 2.86),
                margin_max=opts.get("margin_max", opts.get("margin", 28.6)), class_counts=class_counts)
        else:
            from pytorch_metric_learning.losses import SubCenterArcFaceLoss

            opts = arcface or {}
            self.head = SubCenterArcFaceLoss(num_classes=n_classes, embedding_size=embed_dim,
                                             margin=opts.get("margin", 28.6), scale=opts.get("scale", 64),
                                             sub_centers=opts.get("sub_centers", 3))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """One vector per image: the encoder's feature map, flattened, average- or GeM-pooled."""
        zeros = torch.zeros_like(image[:, :1])
        features = self.encoder(self._encoder_input(image, zeros))
        vector = self.encoder.pool(features) if self.pooling == "gem" else self.pool(features)
        if vector.shape[1] != self.embed_dim:
            raise ValueError(f"the classification head reads {self.embed_dim} numbers per image, but these "
                             f"{tuple(image.shape[-2:])} images give {vector.shape[1]} ({self.pooling} of a "
                             f"{tuple(features.shape[1:])} feature map): the head was sized for another image size; "
                             "set data.image_size to the data's image size (or use classify.flatten_grid)")
        return vector

    def set_class_counts(self, counts) -> None:
        """Training images per class (label order): the `arcface_dynamic` head's margins; no
        effect on the other heads, whose loss does not depend on class frequency."""
        if self.head_kind == "arcface_dynamic":
            self.head.set_class_counts(counts)

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
        self.neck.eval()  # a fixed transform; only zfutils.train.batchnorm.recalibrate re-estimates it
        return self
