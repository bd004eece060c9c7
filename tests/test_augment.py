"""The shape augmentation: line drawings that keep an object's outline and drop its colour and texture."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgeprune.data.augment import LineDrawing
from edgeprune.data.loaders import train_transform
from edgeprune.errors import EdgepruneError
from edgeprune.requests import PruneRequest


def _red_square_on_noise() -> Image.Image:
    rng = np.random.default_rng(0)
    background = np.clip(rng.normal([40, 80, 200], 6, size=(64, 64, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(220, 30, 30))
    return image


def test_line_drawing_keeps_the_outline_and_drops_colour_and_texture() -> None:
    random.seed(0)
    drawn = np.asarray(LineDrawing(p=1.0)(_red_square_on_noise()))
    assert drawn.shape == (64, 64, 3)
    assert (drawn[..., 0] == drawn[..., 1]).all() and (drawn[..., 1] == drawn[..., 2]).all()  # grey
    grey = drawn[..., 0].astype(int)
    outline = np.zeros((64, 64), bool)
    outline[15:49, 15:49] = True
    outline[18:46, 18:46] = False
    assert grey[outline].mean() < 100  # dark strokes along the square's border
    paper = grey[~outline]
    assert (paper >= 250).mean() > 0.85 and paper.mean() > 240  # the noisy ground and the flat inside: white paper
    assert grey[:2].min() == 255 and grey[:, -2:].min() == 255  # no frame from the edge filter


def test_line_drawing_with_p_zero_is_the_identity_and_train_transform_offers_it() -> None:
    image = _red_square_on_noise()
    assert LineDrawing(p=0.0)(image) is image
    shape = train_transform({"input_size": (3, 64, 64), "interpolation": "bicubic", "mean": (0.5,) * 3,
                             "std": (0.5,) * 3}, "shape")  # fmt: skip
    assert "LineDrawing" in repr(shape) and shape(image).shape == (3, 64, 64)
    with pytest.raises(EdgepruneError, match="--augment must be one of standard, shape"):
        PruneRequest(model="vit-micro", random_init=True, augment="edges").validate()
