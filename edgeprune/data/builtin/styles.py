"""The four domain styles of the built-in data set.

Each renderer draws placed parts (pixel coordinates) on a canvas x canvas image in the style of its domain:
shaded photo, brushed painting, outlined cartoon or hatched pencil sketch.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgeprune.data.builtin.palettes import Color, art_colors, cartoon_colors, jitter, photo_colors, pick
from edgeprune.data.builtin.shapes import Part


def _flat(points: np.ndarray) -> list[float]:
    return points.ravel().tolist()


def _draw_part(draw: ImageDraw.ImageDraw, part: Part, fill: Color | tuple[int, ...] | int) -> None:
    if part.closed:
        draw.polygon(_flat(part.points), fill=fill)
    else:
        draw.line(_flat(part.points), fill=fill, width=max(1, round(part.width)))


def _bounds(parts: list[Part]) -> tuple[np.ndarray, np.ndarray]:
    every = np.concatenate([p.points for p in parts])
    return every.min(axis=0), every.max(axis=0)


def _object_mask(parts: list[Part], canvas: int) -> Image.Image:
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    for part in parts:
        _draw_part(draw, part, 255)
    return mask


def _smooth_noise(rng: np.random.Generator, canvas: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish noise varying smoothly over `cells` x `cells` blobs."""
    grid = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((canvas, canvas), Image.Resampling.BICUBIC), dtype=np.float32)


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


def _photo_background(rng: np.random.Generator, canvas: int) -> np.ndarray:
    """Sky over ground outdoors, or wall over floor indoors, with gradients and texture."""
    if rng.random() < 0.6:
        top = pick(rng, [(110, 160, 220), (165, 198, 235), (150, 155, 165), (235, 185, 135)])
        bottom = pick(rng, [(90, 140, 60), (120, 110, 80), (160, 150, 120), (70, 100, 50)])
    else:
        top = pick(rng, [(200, 190, 170), (170, 175, 180), (222, 212, 190), (150, 122, 100)])
        bottom = pick(rng, [(120, 90, 60), (90, 80, 75), (170, 160, 150)])
    top, bottom = jitter(rng, top, 15), jitter(rng, bottom, 15)
    y = np.linspace(0.0, 1.0, canvas, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.45, 0.8)
    upper = np.asarray(top, np.float32) * (0.85 + 0.25 * y / horizon)
    lower = np.asarray(bottom, np.float32) * (1.1 - 0.35 * (y - horizon) / (1 - horizon))
    bg = np.where(y < horizon, upper, lower) * np.ones((1, canvas, 1), np.float32)
    bg *= 1 + 0.08 * _smooth_noise(rng, canvas, 6)[..., None]
    bg += rng.normal(0, 6, (canvas, canvas, 1)).astype(np.float32)
    return bg


def _render_photo(parts: list[Part], class_name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    colors = photo_colors(class_name, rng)
    bg = _photo_background(rng, canvas)

    mask = _object_mask(parts, canvas)
    lo, hi = _bounds(parts)
    shadow = Image.new("L", (canvas, canvas), 0)
    cx, half_w, half_h = (lo[0] + hi[0]) / 2, (hi[0] - lo[0]) * 0.45, canvas * 0.04
    ImageDraw.Draw(shadow).ellipse([cx - half_w, hi[1] - half_h, cx + half_w, hi[1] + half_h], fill=255)
    shadow_a = np.asarray(shadow.filter(ImageFilter.GaussianBlur(canvas / 40)), np.float32)[..., None] / 255
    bg *= 1 - 0.45 * shadow_a

    obj = Image.new("RGB", (canvas, canvas), 0)
    draw = ImageDraw.Draw(obj)
    for part in parts:
        _draw_part(draw, part, colors[part.role])
    # Rounded look: darker towards the silhouette's edges, lit from a random direction, fine texture.
    rim = np.asarray(mask.filter(ImageFilter.GaussianBlur(canvas / 18)), np.float32) / 255
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float32) / canvas - 0.5
    light = rng.uniform(0, 2 * np.pi)
    directional = 1 + rng.uniform(0.3, 0.6) * (xx * np.cos(light) + yy * np.sin(light))
    texture = 1 + 0.15 * rng.standard_normal((canvas, canvas)).astype(np.float32)
    shading = ((0.45 + 0.65 * rim) * directional * texture)[..., None]
    m = np.asarray(mask, np.float32)[..., None] / 255
    out = bg * (1 - m) + np.asarray(obj, np.float32) * shading * m
    return _to_image(out)


def _brush_stroke(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    start: np.ndarray,
    length: float,
    width: float,
    color: Color,
    alpha: int,
) -> None:
    heading = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.6, 0.6)
    pts = [start]
    for k in (1, 2):
        a = heading + bend * k
        pts.append(pts[-1] + length / 2 * np.array([np.cos(a), np.sin(a)]))
    draw.line(_flat(np.array(pts)), fill=(*color, alpha), width=max(1, round(width)), joint="curve")


def _render_art(parts: list[Part], class_name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    background, colors = art_colors(rng)
    img = Image.new("RGB", (canvas, canvas), jitter(rng, background[0], 20))
    draw = ImageDraw.Draw(img, "RGBA")  # RGBA fills blend onto the RGB canvas
    for _ in range(rng.integers(35, 60)):  # background brushwork
        _brush_stroke(
            draw,
            rng,
            rng.random(2) * canvas,
            canvas * rng.uniform(0.1, 0.4),
            canvas * rng.uniform(0.03, 0.08),
            jitter(rng, pick(rng, background), 30),
            int(rng.integers(60, 170)),
        )
    for part in parts:
        _draw_part(draw, part, (*colors[part.role], 235))
    # Brushwork over the object, in its own (jittered) colours, so the texture does not erase the shape.
    inside = np.flatnonzero(np.asarray(_object_mask(parts, canvas)))
    pixels = np.asarray(img)
    lo, hi = _bounds(parts)
    extent = float((hi - lo).max())
    for idx in rng.choice(inside, size=min(len(inside), int(rng.integers(40, 70))), replace=False):
        y, x = divmod(int(idx), canvas)
        r, g, b = (int(v) for v in pixels[y, x])
        _brush_stroke(
            draw,
            rng,
            np.array([x, y], float),
            extent * rng.uniform(0.04, 0.1),
            extent * rng.uniform(0.015, 0.035),
            jitter(rng, (r, g, b), 35),
            int(rng.integers(90, 170)),
        )
    img = img.filter(ImageFilter.GaussianBlur(canvas / 120))
    noise = 14 * np.stack([_smooth_noise(rng, canvas, 10) for _ in range(3)], axis=-1)
    noise += rng.normal(0, 7, (canvas, canvas, 3)).astype(np.float32)
    return _to_image(np.asarray(img, np.float32) + noise)


def _render_cartoon(parts: list[Part], class_name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    colors = cartoon_colors(class_name, rng)

    def pastel() -> Color:
        r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.35), rng.uniform(0.92, 1.0))
        return (int(r * 255), int(g * 255), int(b * 255))

    img = Image.new("RGB", (canvas, canvas), pastel())
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # flat ground band
        draw.rectangle([0, canvas * rng.uniform(0.6, 0.85), canvas, canvas], fill=pastel())
    outline = max(2, round(canvas * rng.uniform(0.022, 0.032)))
    for part in parts:
        if part.closed:
            draw.polygon(_flat(part.points), fill=colors[part.role])
            draw.line(
                _flat(np.concatenate([part.points, part.points[:2]])), fill=(0, 0, 0), width=outline, joint="curve"
            )
        else:
            draw.line(_flat(part.points), fill=(0, 0, 0), width=max(outline, round(part.width)))
    return img


def _wobbly(points: np.ndarray, rng: np.random.Generator, spacing: float, amount: float, closed: bool) -> np.ndarray:
    """Resample a polyline every ~`spacing` pixels and jitter it, for a hand-drawn look."""
    if closed:
        points = np.concatenate([points, points[:1]])
    out = []
    for a, b in zip(points[:-1], points[1:], strict=True):
        n = max(1, int(np.hypot(*(b - a)) / spacing))
        out.append(a + (b - a) * np.linspace(0, 1, n, endpoint=False)[:, None])
    out.append(points[-1:])
    line = np.concatenate(out)
    return line + rng.normal(0, amount, line.shape)


def _hatching(rng: np.random.Generator, canvas: int, ink: int) -> np.ndarray:
    """Parallel (sometimes crossed) thin lines over the whole canvas; white elsewhere."""
    hatch = Image.new("L", (canvas, canvas), 255)
    draw = ImageDraw.Draw(hatch)
    angle, step = rng.uniform(0, np.pi), canvas * rng.uniform(0.025, 0.045)
    for a in (angle, angle + rng.uniform(0.4, 1.2))[: 1 + int(rng.random() < 0.4)]:
        along = np.array([np.cos(a), np.sin(a)]) * canvas * 1.5
        across = np.array([-np.sin(a), np.cos(a)])
        for k in np.arange(-canvas, canvas, step):
            p = canvas / 2 + across * k
            draw.line(_flat(np.array([p - along, p + along])), fill=min(255, ink + int(rng.integers(40, 90))))
    return np.asarray(hatch, np.float32)


def _render_sketch(parts: list[Part], class_name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    paper = int(rng.integers(242, 256))
    ink = int(rng.integers(15, 90))
    width = max(1, round(canvas * rng.uniform(0.006, 0.011)))
    lo, hi = _bounds(parts)
    extent = float((hi - lo).max())
    img = Image.new("L", (canvas, canvas), paper)
    draw = ImageDraw.Draw(img)
    for part in parts:
        if not part.closed:
            draw.line(_flat(part.points), fill=ink, width=width)
            continue
        draw.polygon(_flat(part.points), fill=paper)  # hides the lines of parts behind it
        for _ in range(int(rng.integers(1, 4))):  # a few loose, broken, slightly offset strokes
            line = _wobbly(part.points, rng, max(2.0, extent * 0.03), extent * 0.005, closed=True)
            line += rng.normal(0, extent * 0.005, 2)
            cuts = np.flatnonzero(rng.random(len(line)) < 0.12)
            for piece in np.split(line, cuts):
                if len(piece) > 1 and rng.random() > 0.15:
                    draw.line(_flat(piece), fill=ink, width=width, joint="curve")
    out = np.asarray(img, np.float32)
    if rng.random() < 0.85:  # hatching on one side of the object
        yy, xx = np.mgrid[0:canvas, 0:canvas]
        c, side = (lo + hi) / 2, rng.uniform(0, 2 * np.pi)
        offset = (xx - c[0]) * np.cos(side) + (yy - c[1]) * np.sin(side)
        region = offset > rng.uniform(-0.1, 0.3) * (hi - lo).max()
        region &= np.asarray(_object_mask(parts, canvas)) > 0
        out = np.where(region, np.minimum(out, _hatching(rng, canvas, ink)), out)
    out += rng.normal(0, 3, out.shape).astype(np.float32)
    return _to_image(np.repeat(out[..., None], 3, axis=-1))


STYLES: dict[str, Callable[[list[Part], str, np.random.Generator, int], Image.Image]] = {
    "photo": _render_photo,
    "art_painting": _render_art,
    "cartoon": _render_cartoon,
    "sketch": _render_sketch,
}
