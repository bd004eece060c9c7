"""Training augmentations that take colour and texture away, so that a model must read the class from shape.

A domain-generalisation shortcut: on the source domains colour and texture often carry the class (a grey elephant,
a spotted giraffe), and a held-out sketch has neither. Turning a share of the training images into grey line
drawings (their luminance edges, dark on white) or plain greyscale keeps only what sketches also have.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageFilter


class LineDrawing:
    """With probability `p`, the image as a line drawing: a 3x3 edge filter on each Gaussian-smoothed colour
    channel, the strongest of the three (a red shape on a blue ground of equal brightness still has an outline),
    scaled by its 99th percentile, those below `threshold` (texture, noise) dropped, drawn dark on white with a
    random stroke strength. Draws from Python's `random`, which edgeprune seeds per worker like timm's transforms."""

    def __init__(self, p: float = 0.7, threshold: float = 0.15, blur: float = 0.6) -> None:
        self.p, self.threshold, self.blur = p, threshold, blur

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        smooth = image.convert("RGB").filter(ImageFilter.GaussianBlur(self.blur))
        edges = np.asarray(smooth.filter(ImageFilter.FIND_EDGES), dtype=np.float32).max(axis=2)
        edges[:2], edges[-2:], edges[:, :2], edges[:, -2:] = 0, 0, 0, 0  # the filter's frame is not an edge
        edges /= max(1.0, float(np.percentile(edges, 99)))
        edges[edges < self.threshold] = 0
        drawn = 255 - np.clip(edges * 255 * random.uniform(0.5, 1.0), 0, 255)
        return Image.fromarray(drawn.astype(np.uint8)).convert("RGB")

    def __repr__(self) -> str:
        return f"LineDrawing(p={self.p}, threshold={self.threshold}, blur={self.blur})"
