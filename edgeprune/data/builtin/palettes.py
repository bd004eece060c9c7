"""Colours of the built-in data set: per-class photo palettes, painting palettes and colour helpers."""

from __future__ import annotations

import colorsys

import numpy as np

Color = tuple[int, int, int]

_PHOTO_PALETTE: dict[str, dict[str, list[Color]]] = {
    "dog": {
        "main": [(150, 100, 60), (205, 165, 105), (70, 55, 45), (225, 215, 200), (185, 125, 55)],
        "second": [(95, 65, 40), (60, 45, 35), (200, 180, 150)],
    },
    "elephant": {"main": [(128, 124, 120), (108, 104, 100), (150, 140, 130)], "second": [(90, 88, 86)]},
    "giraffe": {"main": [(222, 178, 95), (205, 160, 85), (230, 195, 130)], "second": [(125, 72, 32), (95, 58, 30)]},
    "guitar": {
        "main": [(205, 125, 55), (170, 85, 35), (150, 35, 30), (40, 38, 36), (230, 185, 115)],
        "second": [(95, 58, 32), (60, 42, 28)],
    },
    "horse": {
        "main": [(125, 72, 40), (85, 52, 32), (50, 40, 34), (205, 200, 195), (165, 115, 72)],
        "second": [(45, 35, 28), (95, 65, 42), (220, 215, 200)],
    },
    "house": {
        "main": [(230, 225, 210), (170, 82, 62), (222, 202, 142), (152, 172, 192), (200, 190, 170)],
        "second": [(152, 52, 42), (92, 62, 52), (82, 82, 92)],
        "light": [(180, 210, 232)],
    },
    "person": {
        "main": [
            (190, 40, 40),
            (40, 90, 170),
            (40, 130, 70),
            (230, 200, 60),
            (240, 240, 235),
            (120, 60, 140),
            (230, 130, 40),
            (60, 60, 65),
        ],
        "second": [(42, 62, 112), (32, 32, 36), (102, 82, 62), (62, 72, 62)],
    },
}
_SKIN: list[Color] = [(240, 200, 170), (225, 175, 135), (180, 125, 90), (120, 80, 55), (90, 60, 45)]

_ART_PALETTES: list[list[Color]] = [
    [(220, 40, 120), (250, 150, 30), (20, 150, 150), (250, 225, 60), (110, 40, 160), (40, 70, 160)],  # fauve
    [(200, 150, 60), (110, 70, 40), (120, 130, 60), (170, 80, 45), (235, 215, 170), (60, 50, 40)],  # earth
    [(30, 50, 120), (60, 110, 180), (140, 180, 220), (20, 30, 60), (200, 215, 235), (90, 80, 150)],  # blue
    [(200, 170, 220), (245, 235, 150), (140, 195, 235), (170, 225, 190), (245, 180, 200), (120, 120, 180)],
    [(180, 30, 30), (30, 30, 30), (240, 200, 50), (230, 230, 220), (40, 90, 60), (200, 100, 40)],  # bold
]


def pick(rng: np.random.Generator, options: list[Color]) -> Color:
    return options[int(rng.integers(len(options)))]


def jitter(rng: np.random.Generator, color: Color, amount: int = 12) -> Color:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _times(color: Color, factor: float) -> Color:
    r, g, b = (int(min(255, v * factor)) for v in color)
    return (r, g, b)


def _luma(color: Color) -> float:
    return 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]


def _mix(color: Color, other: Color, t: float) -> Color:
    r, g, b = (int((1 - t) * a + t * b) for a, b in zip(color, other, strict=True))
    return (r, g, b)


def photo_colors(class_name: str, rng: np.random.Generator) -> dict[str, Color]:
    pal = _PHOTO_PALETTE[class_name]
    main = jitter(rng, pick(rng, pal["main"]))
    return {
        "main": main,
        "shade": _times(main, 0.78),
        "second": jitter(rng, pick(rng, pal["second"])),
        "dark": jitter(rng, (55, 42, 35), 8),
        "light": jitter(rng, pick(rng, pal.get("light", [(236, 232, 222)])), 8),
        "skin": jitter(rng, pick(rng, _SKIN), 8),
    }


def cartoon_colors(class_name: str, rng: np.random.Generator) -> dict[str, Color]:
    """The photo colours made flat and bright; sometimes a fantasy hue."""
    colors = photo_colors(class_name, rng)
    for role in ("main", "second", "skin"):
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in colors[role]))
        if rng.random() < 0.3:
            h = rng.random()
        r, g, b = colorsys.hsv_to_rgb(h, min(1.0, s * 1.3 + 0.3), 0.5 * v + 0.5)
        colors[role] = (int(r * 255), int(g * 255), int(b * 255))
    colors["shade"] = _times(colors["main"], 0.8)
    colors["dark"] = (20, 20, 20)
    colors["light"] = (250, 250, 250)
    return colors


def art_colors(rng: np.random.Generator) -> tuple[list[Color], dict[str, Color]]:
    palette = _ART_PALETTES[int(rng.integers(len(_ART_PALETTES)))]
    order = rng.permutation(len(palette))
    by_value = sorted(palette, key=sum)
    main = jitter(rng, palette[order[0]], 25)
    if abs(_luma(main) - _luma(palette[order[3]])) < 80:  # keep the subject visible against the background
        main = _times(main, 0.45) if _luma(palette[order[3]]) > 128 else _mix(main, (255, 255, 255), 0.6)
    colors = {
        "main": main,
        "shade": _times(main, 0.75),
        "second": jitter(rng, palette[order[1]], 25),
        "skin": jitter(rng, palette[order[2]], 25),
        "dark": _times(by_value[0], 0.6),
        "light": by_value[-1],
    }
    return [palette[i] for i in order[3:]], colors
