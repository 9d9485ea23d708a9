"""Figures the stages show, one module per stage notebook (named after it). Functions return
matplotlib figures; saving is the stage's job."""
from zfutils.plots.ablate_regions import ablation_bars, condition_grid  # noqa: F401
from zfutils.plots.cluster_embeddings import projection_grid  # noqa: F401
from zfutils.plots.finetune_classifier import cam_grid, confusion_matrix, pattern_focus, training_curves  # noqa: F401
from zfutils.plots.inpaint_patterns import inpainting_examples, loss_curves  # noqa: F401
from zfutils.plots.prepare_dataset import (  # noqa: F401
    FISH_COLOUR, PATTERN_COLOUR, class_balance, overlay_masks, pick_samples, sample_grid,
)
from zfutils.plots.transfer_species import transfer_summary  # noqa: F401
from zfutils.plots.vary_training_size import size_curves  # noqa: F401
