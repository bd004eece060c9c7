"""One image of the built-in data set: a class's shape, placed on a canvas and drawn in a domain's style."""

from __future__ import annotations

import numpy as np
from PIL import Image

from edgeprune.data.builtin.shapes import DEFAULT_ROTATION, MAX_ROTATION, SHAPES, place
from edgeprune.data.builtin.styles import STYLES

DOMAINS: tuple[str, ...] = ("photo", "art_painting", "cartoon", "sketch")
CLASSES: tuple[str, ...] = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")

_SUPERSAMPLE = 3  # draw at 3x the output size, then downsample with an antialiasing filter


def render_image(class_name: str, domain: str, rng: np.random.Generator, size: int) -> Image.Image:
    """One `size` x `size` RGB image of `class_name` in the style of `domain`."""
    if class_name not in SHAPES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    if domain not in STYLES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    canvas = size * _SUPERSAMPLE
    parts = place(SHAPES[class_name](rng), rng, canvas, MAX_ROTATION.get(class_name, DEFAULT_ROTATION))
    img = STYLES[domain](parts, class_name, rng, canvas)
    return img.resize((size, size), Image.Resampling.LANCZOS)
