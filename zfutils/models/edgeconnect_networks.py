"""EdgeConnect's networks (knazeri/edge-connect src/networks.py, commit 3142579), with the official
state_dict names, plus the two-part wrappers the registry hands out.

Both generators share one layout: reflection pad 3 + 7x7 conv, two 4x4 stride-2 convs (x1/4), a run of
dilated residual blocks, two 4x4 stride-2 transposed convs and a 7x7 conv, with InstanceNorm2d
(affine=False, no running stats) + ReLU after every conv but the last. The edge generator wraps every
conv but the last in `torch.nn.utils.spectral_norm` (the hook API, so the keys are *.weight_orig,
*.weight_u, *.weight_v; its residual convs then have no bias). In eval mode that hook does no power
iteration: it divides by dot(u, W_mat v) with the stored u, v, which is what the official files hold.
"""
from __future__ import annotations

import torch
from torch import nn

OFFICIAL_BLOCKS = 8  # networks.py: residual_blocks=8


def channels(base: int, width: float) -> int:
    """An official channel count scaled by `width`, at least 1."""
    return max(1, int(round(base * width)))


def _sn(layer: nn.Module, spectral: bool) -> nn.Module:
    # dim is 1 for ConvTranspose2d (torch picks it), as in the original
    return nn.utils.spectral_norm(layer) if spectral else layer


class ResnetBlock(nn.Module):
    """pad(d) conv3x3(dilation d) IN ReLU pad(1) conv3x3 IN, added to the input (no ReLU after)."""

    def __init__(self, *, dim: int, dilation: int = 2, spectral: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _sn(nn.Conv2d(dim, dim, 3, dilation=dilation, bias=not spectral), spectral),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            _sn(nn.Conv2d(dim, dim, 3, bias=not spectral), spectral),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class _ResnetGenerator(nn.Module):
    """The encoder / middle / decoder shared by EdgeConnect's two generators."""

    def __init__(self, *, in_channels: int, out_channels: int, spectral: bool, width: float, blocks: int | None):
        super().__init__()
        c1, c2, c3 = (channels(c, width) for c in (64, 128, 256))
        blocks = OFFICIAL_BLOCKS if blocks is None else blocks

        def norm_relu(c):
            return [nn.InstanceNorm2d(c, track_running_stats=False), nn.ReLU()]

        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), _sn(nn.Conv2d(in_channels, c1, 7), spectral), *norm_relu(c1),
            _sn(nn.Conv2d(c1, c2, 4, stride=2, padding=1), spectral), *norm_relu(c2),
            _sn(nn.Conv2d(c2, c3, 4, stride=2, padding=1), spectral), *norm_relu(c3),
        )
        self.middle = nn.Sequential(*[ResnetBlock(dim=c3, dilation=2, spectral=spectral) for _ in range(blocks)])
        self.decoder = nn.Sequential(
            _sn(nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1), spectral), *norm_relu(c2),
            _sn(nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), spectral), *norm_relu(c1),
            nn.ReflectionPad2d(3), nn.Conv2d(c1, out_channels, 7),
        )
        init_official(self)

    def logits(self, x):
        """The decoder output, before the final activation."""
        return self.decoder(self.middle(self.encoder(x)))


class EdgeGenerator(_ResnetGenerator):
    """cat([gray*(1-m)+m, edges*(1-m), m]) -> sigmoid edge map (1 ch); spectral norm throughout."""

    def __init__(self, *, width: float = 1.0, blocks: int | None = None):
        super().__init__(in_channels=3, out_channels=1, spectral=True, width=width, blocks=blocks)

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


class InpaintGenerator(_ResnetGenerator):
    """cat([rgb*(1-m)+m, edges]) -> (tanh+1)/2 image (3 ch); no spectral norm."""

    def __init__(self, *, width: float = 1.0, blocks: int | None = None):
        super().__init__(in_channels=4, out_channels=3, spectral=False, width=width, blocks=blocks)

    def forward(self, x):
        return (torch.tanh(self.logits(x)) + 1) / 2


class Discriminator(nn.Module):
    """70x70 PatchGAN: five spectral-norm 4x4 convs without bias, LeakyReLU(0.2) between them.

    Returns (sigmoid(conv5) if use_sigmoid else conv5, [conv1..conv5 outputs]) like the original;
    `conv1` is also registered as `features`, so the state_dict holds both names (official layout).
    """

    def __init__(self, *, in_channels: int, width: float = 1.0, use_sigmoid: bool = True):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        c1, c2, c3, c4 = (channels(c, width) for c in (64, 128, 256, 512))

        def block(cin, cout, stride, act=True):
            conv = nn.utils.spectral_norm(nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=False))
            return nn.Sequential(conv, nn.LeakyReLU(0.2)) if act else nn.Sequential(conv)

        self.conv1 = self.features = block(in_channels, c1, 2)
        self.conv2 = block(c1, c2, 2)
        self.conv3 = block(c2, c3, 2)
        self.conv4 = block(c3, c4, 1)
        self.conv5 = block(c4, 1, 1, act=False)
        init_official(self)

    def forward(self, x):
        feats = []
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = conv(x)
            feats.append(x)
        return (torch.sigmoid(x) if self.use_sigmoid else x), feats


def init_official(module: nn.Module, gain: float = 0.02) -> None:
    """BaseNetwork.init_weights('normal'): conv weights ~ N(0, 0.02), biases 0. For spectral-norm convs
    the original writes through `weight.data`, which shares storage with weight_orig."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(weight.data, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias.data)


class EdgeConnectGenerator(nn.Module):
    """Both generators: `edge` (keys edge.<official>) then `inpaint` (keys inpaint.<official>).

    forward(image, gray, edges, mask) runs the joint pipeline of edge_connect.py (MODEL 3/4, sample()):
    the edge map is predicted, merged with the known edges outside the hole and fed to the inpainting
    generator. The merge is not detached by default: MODEL=4 (joint) lets the inpainting losses reach
    the edge generator; `detach_edges = True` is MODEL=3 (edgeconnect_training.configure sets it).
    """

    detach_edges = False  # MODEL=3: the inpainting losses stop at the edges (src/edge_connect.py:145)

    def __init__(self, *, width: float = 1.0, blocks: int | None = None):
        super().__init__()
        self.edge = EdgeGenerator(width=width, blocks=blocks)
        self.inpaint = InpaintGenerator(width=width, blocks=blocks)

    def forward(self, image, gray, edges, mask):
        edge_output = self.edge(edge_input(gray, edges, mask))
        merged = edge_output * mask + edges * (1 - mask)
        if self.detach_edges:
            merged = merged.detach()
        return edge_output, merged, self.inpaint(inpaint_input(image, merged, mask))


class EdgeConnectDiscriminator(nn.Module):
    """Both discriminators: `edge` on cat([gray, edges]) (2 ch), `inpaint` on the RGB image (3 ch)."""

    def __init__(self, *, width: float = 1.0):
        super().__init__()
        self.edge = Discriminator(in_channels=2, width=width)
        self.inpaint = Discriminator(in_channels=3, width=width)


def edge_input(gray, edges, mask):
    """EdgeModel.forward's input: cat([gray*(1-m)+m, edges*(1-m), m]), holes white, edges blanked."""
    return torch.cat([gray * (1 - mask) + mask, edges * (1 - mask), mask], dim=1)


def inpaint_input(image, edges, mask):
    """InpaintingModel.forward's input: cat([image*(1-m)+m, edges]) (edges as given, not masked)."""
    return torch.cat([image * (1 - mask) + mask, edges], dim=1)
