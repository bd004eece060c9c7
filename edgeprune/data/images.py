"""Decode any image a DG data set may hold into the 8-bit RGB the models take: EXIF orientation applied, 16-bit
greyscale scaled (not clipped to white), transparency composited on white, palette, CMYK and greyscale converted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_WIDE_GREY = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _WIDE_GREY:
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(np.round(values / scale), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return to_rgb(ImageOps.exif_transpose(image))
