"""Figures the stages show. Functions return matplotlib figures; saving is the stage's job."""
from zfutils.plots.classify import cam_grid, confusion_matrix, pattern_focus, training_curves  # noqa: F401
from zfutils.plots.clusters import projection_grid  # noqa: F401
from zfutils.plots.data import (  # noqa: F401
    FISH_COLOUR, PATTERN_COLOUR, class_balance, overlay_masks, pick_samples, sample_grid,
)
from zfutils.plots.inpaint import inpainting_examples, loss_curves  # noqa: F401
from zfutils.plots.regions import ablation_bars, condition_grid  # noqa: F401
from zfutils.plots.sizestudy import size_curves  # noqa: F401
from zfutils.plots.transfer import transfer_summary  # noqa: F401
