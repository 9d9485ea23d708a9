import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from zfutils.cam import cam_mass_shares, grad_cams, overlay


def tiny_classifier() -> nn.Sequential:
    """Class 0 is red evidence, class 1 green: conv1 copies red and green into two channels, conv2
    blurs each (3x3 mean), the pooled channels are the logits. Weights set by hand: deterministic."""
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model[0].weight[0, 0, 1, 1] = model[0].weight[1, 1, 1, 1] = 1.0
        model[2].weight[0, 0] = model[2].weight[1, 1] = 1 / 9
        model[6].weight.copy_(torch.eye(2))
    return model


def two_squares(red_top_left: bool) -> torch.Tensor:
    """16 x 16 dim image, a red square in one corner quadrant and a green one in the opposite."""
    image = torch.full((3, 16, 16), 0.1)
    tl, br = (slice(2, 6), slice(2, 6)), (slice(10, 14), slice(10, 14))
    red, green = (tl, br) if red_top_left else (br, tl)
    image[0][red] = 1.0
    image[1][green] = 1.0
    return image


def quadrant_means(cam: np.ndarray) -> tuple[float, float]:
    return float(cam[:8, :8].mean()), float(cam[8:, 8:].mean())


def peak(cam: np.ndarray) -> tuple[int, int]:
    return tuple(int(i) for i in np.unravel_index(cam.argmax(), cam.shape))


IMAGES = torch.stack([two_squares(True), two_squares(True), two_squares(False)])
LABELS = [0, 1, 0]  # red (top left), green (bottom right), red (bottom right)


def check_cams(cams: np.ndarray):
    assert cams.shape == (3, 16, 16) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1 and np.allclose(cams.max(axis=(1, 2)), 1)
    for cam, top_left in zip(cams, [True, False, False]):
        row, col = peak(cam)
        assert (row < 8 and col < 8) if top_left else (row >= 8 and col >= 8)
        inside, outside = quadrant_means(cam)[::1 if top_left else -1]
        assert inside > 4 * outside


def test_grad_cam_peaks_where_the_class_evidence_is():
    model = tiny_classifier().train()
    cams = grad_cams(model, model[2], IMAGES, LABELS, batch_size=2)
    check_cams(cams)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("frozen", ["encoder", "all"])
def test_grad_cam_with_frozen_weights(frozen):
    model = tiny_classifier().eval()
    for p in (model[:4] if frozen == "encoder" else model).parameters():
        p.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    # pytorch-grad-cam alone gets no gradient at the target layer here and fails.
    with pytest.raises((AttributeError, RuntimeError)), GradCAM(model=model, target_layers=[model[2]]) as cam:
        cam(input_tensor=IMAGES, targets=[ClassifierOutputTarget(k) for k in LABELS])
    grads = [p.grad for p in model.parameters()]  # the failed try left some on the head
    check_cams(grad_cams(model, model[2], IMAGES, LABELS))
    assert not model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))


def flattened_head_classifier() -> nn.Sequential:
    """One channel copying the red input, a 2 x 2 map (8 x 8 average pools), a linear head on the
    flattened map: class 0 reads the top-left cell with +1 and the bottom-right with -1. Averaged
    over the map its gradient is 0, the weight Grad-CAM gives the channel; its score is the
    top-left cell minus the bottom-right one."""
    model = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.AvgPool2d(8), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model[0].weight[0, 0] = 1.0
        model[4].weight[0] = torch.tensor([1.0, 0.0, 0.0, -1.0])
    return model


def test_behind_a_flattened_head_hirescam_shows_the_cell_the_score_uses_and_gradcam_nothing():
    model = flattened_head_classifier()
    image = two_squares(True)[None]  # red in the top-left quadrant: the positive cell
    hires = grad_cams(model, model[2], image, [0], method="hirescam")[0]
    grad = grad_cams(model, model[2], image, [0], method="gradcam")[0]
    assert not grad.any()  # the averaged weight is 0: an empty map
    inside, outside = quadrant_means(hires)
    assert peak(hires)[0] < 8 and peak(hires)[1] < 8 and inside > 4 * outside


def test_behind_a_pooled_head_both_methods_give_the_same_map():
    model = tiny_classifier()
    assert np.allclose(grad_cams(model, model[2], IMAGES, LABELS, method="hirescam"),
                       grad_cams(model, model[2], IMAGES, LABELS, method="gradcam"), atol=1e-5)


def test_unknown_cam_method_is_named():
    with pytest.raises(ValueError, match="unknown CAM method 'scorecam'.*hirescam, gradcam"):
        grad_cams(tiny_classifier(), tiny_classifier()[2], IMAGES, LABELS, method="scorecam")


def test_label_outside_the_head_raises_instead_of_being_swallowed():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="not a class"):
        grad_cams(model, model[2], IMAGES, [0, 5, 0])


def test_mass_shares_on_hand_made_maps():
    fish = np.zeros((4, 4), bool)
    fish[:2] = True  # top half: 8 pixels
    pattern = np.zeros((4, 4), bool)
    pattern[0, :2] = True  # 2 of them
    on_pattern = pattern.astype(float)
    uniform = np.ones((4, 4))
    mixed = np.zeros((4, 4))
    mixed[0, 0], mixed[3, 3] = 3.0, 1.0  # 3 on the pattern, 1 on the background
    cams = np.stack([on_pattern, uniform, np.zeros((4, 4)), mixed])
    out = cam_mass_shares(cams, np.stack([fish] * 4), np.stack([pattern] * 4))
    expected = {"pattern": [1, 2 / 16, 3 / 4], "fish_outside_pattern": [0, 6 / 16, 0], "background": [0, 8 / 16, 1 / 4]}
    for name, values in expected.items():
        assert out[name][[0, 1, 3]] == pytest.approx(values) and np.isnan(out[name][2])
        assert out[f"mean_{name}"] == pytest.approx(np.mean(values))
    assert out["n_empty"] == 1
    # A pattern pixel the fish mask misses still counts as pattern; shares always sum to 1.
    off = cam_mass_shares(uniform[None], np.zeros((1, 4, 4)), pattern[None])
    assert off["pattern"][0] == pytest.approx(2 / 16) and off["background"][0] == pytest.approx(14 / 16)
    with pytest.raises(ValueError, match="resize the masks"):
        cam_mass_shares(cams, np.ones((4, 8, 8)), np.ones((4, 4, 4)))


def test_overlay_is_a_float_heat_map_over_the_image():
    image = np.full((8, 8, 3), 0.5, np.float32)
    cam = np.zeros((8, 8), np.float32)
    cam[:, :4] = 1.0
    out = overlay(image, cam)
    assert out.shape == (8, 8, 3) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    hot, cold = out[0, 0], out[0, 7]
    assert hot[0] > cold[0] and cold[2] > hot[2]  # jet: red where the CAM is high, blue where low
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        overlay(image * 255, cam)
