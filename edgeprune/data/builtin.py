"""Built-in stand-in for PACS, drawn procedurally: an offline default data set with PACS's layout
(4 style domains x 7 object classes) and a real domain gap between photo, painting, cartoon and sketch styles.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DOMAINS: tuple[str, ...] = ("photo", "art_painting", "cartoon", "sketch")
CLASSES: tuple[str, ...] = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")

VERSION = 1
DEFAULT_IMAGES_PER_CLASS = 80  # 2,240 images: enough for the demo's from-scratch ViT to learn the sources
MARKER = ".complete"
_SUPERSAMPLE = 3  # draw at 3x the output size, then downsample with an antialiasing filter

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Part:
    """One drawing primitive: a filled polygon (closed) or a stroked polyline (open)."""

    points: np.ndarray  # (N, 2); unit frame (x right, y down, object within about [-1, 1]) or pixels
    role: str  # colour role: "main", "shade", "second", "dark", "light" or "skin"
    closed: bool = True
    width: float = 0.0  # stroke width of an open polyline, in the same units as points


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers (unit frame)
# ----------------------------------------------------------------------------------------------------------


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    pts = np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)
    return _rotate(pts, angle_deg) + (cx, cy)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=float)


def _rotate(pts: np.ndarray, angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return pts @ np.array([[c, s], [-s, c]])


def _tube(points: list[tuple[float, float]] | np.ndarray, w0: float, w1: float | None = None) -> np.ndarray:
    """Polygon of a (possibly bent) limb along `points`, tapering from width w0 to w1."""
    p = np.asarray(points, dtype=float)
    w = np.linspace(w0, w0 if w1 is None else w1, len(p))[:, None]
    tangent = np.gradient(p, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    return np.concatenate([p + normal * w / 2, (p - normal * w / 2)[::-1]])


def _step(start: tuple[float, float], angle_deg: float, length: float) -> tuple[float, float]:
    """Point `length` away from `start`; angle 0 points straight down, positive angles lean forward (+x)."""
    a = np.radians(angle_deg)
    return (start[0] + length * np.sin(a), start[1] + length * np.cos(a))


def _legs(
    rng: np.random.Generator,
    hips_x: list[float],
    hip_y: float,
    length: float,
    w0: float,
    w1: float,
    swing: float,
    knee: float,
    hoof: float = 0.0,
) -> list[Part]:
    """Legs as bent tubes; the far leg of each pair is drawn first, in the darker "shade" role."""
    far, near = [], []
    for k, x in enumerate(hips_x):
        upper = rng.uniform(-swing, swing)
        lower = upper + rng.uniform(-knee, knee)
        mid = _step((x, hip_y), upper, length / 2)
        foot = _step(mid, lower, length / 2)
        role = "shade" if k % 2 else "main"
        leg = [Part(_tube([(x, hip_y), mid, foot], w0, w1), role)]
        if hoof:
            leg.append(Part(_tube([_step(foot, lower, -hoof), foot], w1 * 1.1), "dark"))
        (far if k % 2 else near).extend(leg)
    return far + near


def _j(rng: np.random.Generator, value: float, frac: float = 0.12) -> float:
    return value * rng.uniform(1.0 - frac, 1.0 + frac)


# ----------------------------------------------------------------------------------------------------------
# The seven classes, each a list of primitives in the unit frame, facing +x, drawn back to front
# ----------------------------------------------------------------------------------------------------------


def _dog(rng: np.random.Generator) -> list[Part]:
    brx, bry = _j(rng, 0.45), _j(rng, 0.19)
    tail_up = rng.uniform(-0.35, 0.15)
    tail = [(-brx * 0.92, -0.04), (-brx - 0.14, -0.08 + tail_up * 0.6), (-brx - 0.22, -0.1 + tail_up)]
    hx, hy, hr = brx + _j(rng, 0.06, 0.4), -bry - _j(rng, 0.08, 0.4), _j(rng, 0.16)
    parts = [Part(_tube(tail, 0.08, 0.03), "main")]
    parts += _legs(
        rng, [-brx * 0.7, -brx * 0.45, brx * 0.45, brx * 0.7], bry * 0.4, _j(rng, 0.38), 0.11, 0.08, swing=22, knee=15
    )
    parts += [
        Part(_ellipse(0.0, 0.0, brx, bry), "main"),
        Part(_tube([(brx * 0.7, -bry * 0.3), (hx, hy)], 0.16, 0.13), "main"),  # neck
        Part(_ellipse(hx, hy, hr, hr * 0.95), "main"),
        Part(_ellipse(hx + hr * 0.9, hy + hr * 0.3, hr * 0.7, hr * 0.45), "main"),  # snout
        Part(_ellipse(hx + hr * 1.55, hy + hr * 0.2, hr * 0.2, hr * 0.17), "dark"),  # nose
        Part(_ellipse(hx + hr * 0.35, hy - hr * 0.25, hr * 0.14, hr * 0.14), "dark"),  # eye
    ]
    if rng.random() < 0.5:  # floppy ear
        parts.append(Part(_ellipse(hx - hr * 0.35, hy + hr * 0.15, hr * 0.3, hr * 0.75, 20), "second"))
    else:  # pointed ear
        ear = [(hx - hr * 0.6, hy - hr * 0.5), (hx - hr * 0.05, hy - hr * 0.75), (hx - hr * 0.45, hy - hr * 1.6)]
        parts.append(Part(np.array(ear), "second"))
    return parts


def _elephant(rng: np.random.Generator) -> list[Part]:
    brx, bry = _j(rng, 0.55), _j(rng, 0.36)
    hx, hy, hr = brx * 0.95, -bry * 0.55, _j(rng, 0.27)
    curl = rng.uniform(-0.15, 0.2)
    trunk = [
        (hx + hr * 0.8, hy + hr * 0.1),
        (hx + hr * 1.2, hy + hr * 0.9),
        (hx + hr * 1.25, hy + hr * 1.8),
        (hx + hr * 1.25 + curl, hy + hr * 2.5 - abs(curl)),
    ]
    parts = [Part(_tube([(-brx * 0.97, -bry * 0.2), (-brx - 0.1, bry * 0.6)], 0.05, 0.03), "main")]  # tail
    parts += _legs(
        rng, [-brx * 0.62, -brx * 0.35, brx * 0.35, brx * 0.62], bry * 0.45, _j(rng, 0.5), 0.22, 0.2, swing=8, knee=5
    )
    parts += [
        Part(_ellipse(0.0, 0.0, brx, bry), "main"),
        Part(_ellipse(hx, hy, hr, hr), "main"),
        Part(_tube(trunk, 0.17, 0.07), "main"),
        Part(
            _tube(
                [(hx + hr * 0.7, hy + hr * 0.75), (hx + hr * 1.1, hy + hr * 1.2), (hx + hr * 1.55, hy + hr * 1.1)],
                0.06,
                0.025,
            ),
            "light",
        ),  # tusk
        Part(_ellipse(hx - hr * 0.3, hy + hr * 0.2, _j(rng, hr * 0.65), _j(rng, hr), -10), "shade"),  # ear
        Part(_ellipse(hx + hr * 0.45, hy - hr * 0.3, hr * 0.09, hr * 0.09), "dark"),  # eye
    ]
    return parts


def _giraffe(rng: np.random.Generator) -> list[Part]:
    brx, bry = _j(rng, 0.36), _j(rng, 0.19)
    neck_len, neck_lean = _j(rng, 0.85), rng.uniform(15, 40)
    neck_base = (brx * 0.7, -bry * 0.3)
    top = _step(neck_base, 180 - neck_lean, neck_len)
    head_angle = rng.uniform(10, 40)
    hx, hy = top[0] + 0.12 * np.cos(np.radians(head_angle)), top[1] + 0.12 * np.sin(np.radians(head_angle))
    parts = [Part(_tube([(-brx * 0.95, -bry * 0.3), (-brx - 0.08, bry * 1.2)], 0.035, 0.02), "main")]  # tail
    parts += _legs(
        rng,
        [-brx * 0.75, -brx * 0.5, brx * 0.5, brx * 0.75],
        bry * 0.4,
        _j(rng, 0.85),
        0.08,
        0.055,
        swing=12,
        knee=10,
        hoof=0.05,
    )
    parts += [
        Part(_ellipse(0.0, 0.0, brx, bry, rng.uniform(-12, 0)), "main"),
        Part(_tube([neck_base, top], 0.2, 0.09), "main"),
        Part(_tube([(top[0] - 0.02, top[1] - 0.02), (top[0] - 0.05, top[1] - 0.14)], 0.03), "dark"),  # horn
        Part(_tube([(top[0] + 0.03, top[1] - 0.02), (top[0] + 0.02, top[1] - 0.14)], 0.03), "dark"),  # horn
        Part(_ellipse(hx, hy, 0.15, 0.065, head_angle), "main"),
        Part(_ellipse(top[0] + 0.02, top[1] + 0.01, 0.025, 0.025), "dark"),  # eye
    ]
    for _ in range(rng.integers(9, 15)):  # spots on body and neck
        if rng.random() < 0.6:
            r, t = np.sqrt(rng.random()) * 0.75, rng.uniform(0, 2 * np.pi)
            x, y = r * brx * np.cos(t), r * bry * np.sin(t)
        else:
            f = rng.uniform(0.05, 0.8)
            x, y = neck_base[0] + f * (top[0] - neck_base[0]), neck_base[1] + f * (top[1] - neck_base[1])
        s = rng.uniform(0.035, 0.06)
        parts.append(Part(_ellipse(x, y, s, s * rng.uniform(0.6, 1.0), rng.uniform(0, 180), n=7), "second"))
    return parts


def _guitar(rng: np.random.Generator) -> list[Part]:
    lower_r, upper_r = _j(rng, 0.4), _j(rng, 0.3)
    neck_len, neck_w, hole_r = _j(rng, 0.75), _j(rng, 0.1), _j(rng, 0.1)
    upper_y = 0.45 - lower_r * 0.75 - upper_r * 0.75
    neck_top = upper_y - upper_r * 0.5 - neck_len
    parts = [
        Part(_rect(-neck_w / 2, neck_top, neck_w / 2, upper_y), "second"),
        Part(
            np.array(
                [
                    (-neck_w * 0.7, neck_top - 0.22),
                    (neck_w * 0.7, neck_top - 0.22),
                    (neck_w * 0.55, neck_top + 0.02),
                    (-neck_w * 0.55, neck_top + 0.02),
                ]
            ),
            "dark",
        ),  # head
        Part(_ellipse(0.0, 0.45, lower_r, lower_r * 0.92, n=36), "main"),
        Part(_ellipse(0.0, upper_y, upper_r, upper_r * 0.92, n=36), "main"),
        Part(_ellipse(0.0, (0.45 + upper_y) / 2 - 0.02, hole_r, hole_r), "dark"),  # sound hole
        Part(_rect(-0.14, 0.52, 0.14, 0.58), "dark"),  # bridge
    ]
    for x in np.linspace(-neck_w * 0.3, neck_w * 0.3, 4):  # strings
        string = np.array([(x, 0.55), (x * 1.3, neck_top - 0.05)])
        parts.append(Part(string, "light", closed=False, width=0.008))
    return parts


def _horse(rng: np.random.Generator) -> list[Part]:
    brx, bry = _j(rng, 0.48), _j(rng, 0.19)
    neck_base = (brx * 0.7, -bry * 0.3)
    poll = _step(neck_base, 180 - rng.uniform(25, 45), _j(rng, 0.48))  # top of the neck
    muzzle = _step(poll, rng.uniform(40, 80), _j(rng, 0.38))
    tail = [(-brx * 0.97, -bry * 0.5), (-brx - 0.14, bry * 0.2), (-brx - rng.uniform(0.1, 0.25), bry + 0.35)]
    parts = [Part(_tube(tail, 0.1, 0.05), "second")]
    parts += _legs(
        rng,
        [-brx * 0.75, -brx * 0.55, brx * 0.55, brx * 0.75],
        bry * 0.4,
        _j(rng, 0.7),
        0.1,
        0.06,
        swing=25,
        knee=25,
        hoof=0.06,
    )
    parts += [
        Part(_ellipse(0.0, 0.0, brx, bry), "main"),
        Part(_tube([neck_base, poll], 0.26, 0.14), "main"),
        Part(
            np.array(
                [(poll[0] - 0.04, poll[1] - 0.02), (poll[0] + 0.02, poll[1] - 0.05), (poll[0] - 0.03, poll[1] - 0.16)]
            ),
            "main",
        ),  # ear
        Part(_tube([poll, muzzle], 0.15, 0.1), "main"),  # head
        Part(
            _tube([(neck_base[0] - 0.12, neck_base[1] - 0.02), (poll[0] - 0.07, poll[1] + 0.02)], 0.07, 0.05), "second"
        ),  # mane
        Part(_ellipse(*_step(poll, rng.uniform(40, 80), 0.09), 0.025, 0.025), "dark"),  # eye
    ]
    return parts


def _house(rng: np.random.Generator) -> list[Part]:
    w, h = _j(rng, 0.6, 0.2), _j(rng, 0.45, 0.2)
    roof_h, over = _j(rng, 0.55, 0.25), rng.uniform(0.05, 0.15)
    apex_x = rng.uniform(-0.1, 0.1)
    parts = []
    if rng.random() < 0.6:
        cx = rng.uniform(0.2, 0.45) * w * rng.choice([-1, 1])
        parts.append(Part(_rect(cx - 0.06, -roof_h * 0.9, cx + 0.06, -roof_h * 0.3), "second"))  # chimney
    parts += [
        Part(_rect(-w, 0.0, w, 2 * h), "main"),
        Part(np.array([(-w - over, 0.02), (w + over, 0.02), (apex_x, -roof_h)]), "second"),
    ]
    door_x = rng.uniform(-0.5, 0.5) * w
    parts.append(Part(_rect(door_x - 0.1, 2 * h - 0.4, door_x + 0.1, 2 * h), "dark"))
    for wx in (-w * 0.6, w * 0.6):
        if abs(wx - door_x) < 0.25:
            continue
        wy = h * rng.uniform(0.55, 0.8)
        parts.append(Part(_rect(wx - 0.11, wy - 0.11, wx + 0.11, wy + 0.11), "light"))
        parts.append(Part(np.array([(wx, wy - 0.11), (wx, wy + 0.11)]), "dark", closed=False, width=0.02))
        parts.append(Part(np.array([(wx - 0.11, wy), (wx + 0.11, wy)]), "dark", closed=False, width=0.02))
    return parts


def _person(rng: np.random.Generator) -> list[Part]:
    sh, hip, waist_y = _j(rng, 0.2), _j(rng, 0.09), _j(rng, 0.15, 0.3)
    leg_len, arm_len = _j(rng, 0.72), _j(rng, 0.55)
    parts = []
    for side in (-1, 1):
        knee = _step((side * hip, waist_y), side * rng.uniform(0, 15), leg_len / 2)
        foot = _step(knee, side * rng.uniform(-5, 20), leg_len / 2)
        parts.append(Part(_tube([(side * hip, waist_y - 0.05), knee, foot], 0.14, 0.1), "second"))
        parts.append(Part(_ellipse(foot[0] + side * 0.04, foot[1], 0.07, 0.035), "dark"))  # shoe
    parts += [
        Part(np.array([(-sh, -0.5), (sh, -0.5), (sh * 0.85, waist_y), (-sh * 0.85, waist_y)]), "main"),
        Part(_rect(-0.05, -0.6, 0.05, -0.48), "skin"),  # neck
        Part(_ellipse(0.0, -0.72, 0.14, 0.16), "skin"),
        Part(_ellipse(0.0, -0.79, 0.15, 0.1), "dark"),  # hair
        Part(_ellipse(0.06, -0.72, 0.02, 0.02), "dark"),  # eye
    ]
    for side in (-1, 1):
        shoulder = (side * sh * 0.9, -0.45)
        angle = side * rng.uniform(5, 140)
        elbow = _step(shoulder, angle, arm_len / 2)
        hand = _step(elbow, angle + side * rng.uniform(-30, 40), arm_len / 2)
        parts.append(Part(_tube([shoulder, elbow, hand], 0.11, 0.08), "main"))
        parts.append(Part(_ellipse(hand[0], hand[1], 0.05, 0.05), "skin"))
    return parts


_SHAPES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "dog": _dog,
    "elephant": _elephant,
    "giraffe": _giraffe,
    "guitar": _guitar,
    "horse": _horse,
    "house": _house,
    "person": _person,
}
_MAX_ROTATION = {"guitar": 35.0}  # degrees; others get the default below
_DEFAULT_ROTATION = 10.0


def _place(parts: list[Part], rng: np.random.Generator, canvas: int, max_rotation: float) -> list[Part]:
    """Random flip, rotation, scale (0.6-1.0 of the canvas) and position; returns parts in pixels."""
    flip = np.array([-1.0 if rng.random() < 0.5 else 1.0, 1.0])
    angle = rng.uniform(-max_rotation, max_rotation)
    moved = [_rotate(p.points * flip, angle) for p in parts]
    every = np.concatenate(moved)
    lo, hi = every.min(axis=0), every.max(axis=0)
    margin = 0.03 * canvas
    scale = rng.uniform(0.6, 1.0) * (canvas - 2 * margin) / float(np.max(hi - lo))
    offset = margin + rng.random(2) * (canvas - 2 * margin - (hi - lo) * scale) - lo * scale
    return [replace(p, points=m * scale + offset, width=p.width * scale) for p, m in zip(parts, moved, strict=True)]


# ----------------------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------------------

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


def _pick(rng: np.random.Generator, options: list[Color]) -> Color:
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, color: Color, amount: int = 12) -> Color:
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


def _photo_colors(class_name: str, rng: np.random.Generator) -> dict[str, Color]:
    pal = _PHOTO_PALETTE[class_name]
    main = _jitter(rng, _pick(rng, pal["main"]))
    return {
        "main": main,
        "shade": _times(main, 0.78),
        "second": _jitter(rng, _pick(rng, pal["second"])),
        "dark": _jitter(rng, (55, 42, 35), 8),
        "light": _jitter(rng, _pick(rng, pal.get("light", [(236, 232, 222)])), 8),
        "skin": _jitter(rng, _pick(rng, _SKIN), 8),
    }


def _cartoon_colors(class_name: str, rng: np.random.Generator) -> dict[str, Color]:
    """The photo colours made flat and bright; sometimes a fantasy hue."""
    colors = _photo_colors(class_name, rng)
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


def _art_colors(rng: np.random.Generator) -> tuple[list[Color], dict[str, Color]]:
    palette = _ART_PALETTES[int(rng.integers(len(_ART_PALETTES)))]
    order = rng.permutation(len(palette))
    by_value = sorted(palette, key=sum)
    main = _jitter(rng, palette[order[0]], 25)
    if abs(_luma(main) - _luma(palette[order[3]])) < 80:  # keep the subject visible against the background
        main = _times(main, 0.45) if _luma(palette[order[3]]) > 128 else _mix(main, (255, 255, 255), 0.6)
    colors = {
        "main": main,
        "shade": _times(main, 0.75),
        "second": _jitter(rng, palette[order[1]], 25),
        "skin": _jitter(rng, palette[order[2]], 25),
        "dark": _times(by_value[0], 0.6),
        "light": by_value[-1],
    }
    return [palette[i] for i in order[3:]], colors


# ----------------------------------------------------------------------------------------------------------
# The four domain styles; each renders placed parts (pixel coordinates) on a canvas x canvas image
# ----------------------------------------------------------------------------------------------------------


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
        top = _pick(rng, [(110, 160, 220), (165, 198, 235), (150, 155, 165), (235, 185, 135)])
        bottom = _pick(rng, [(90, 140, 60), (120, 110, 80), (160, 150, 120), (70, 100, 50)])
    else:
        top = _pick(rng, [(200, 190, 170), (170, 175, 180), (222, 212, 190), (150, 122, 100)])
        bottom = _pick(rng, [(120, 90, 60), (90, 80, 75), (170, 160, 150)])
    top, bottom = _jitter(rng, top, 15), _jitter(rng, bottom, 15)
    y = np.linspace(0.0, 1.0, canvas, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.45, 0.8)
    upper = np.asarray(top, np.float32) * (0.85 + 0.25 * y / horizon)
    lower = np.asarray(bottom, np.float32) * (1.1 - 0.35 * (y - horizon) / (1 - horizon))
    bg = np.where(y < horizon, upper, lower) * np.ones((1, canvas, 1), np.float32)
    bg *= 1 + 0.08 * _smooth_noise(rng, canvas, 6)[..., None]
    bg += rng.normal(0, 6, (canvas, canvas, 1)).astype(np.float32)
    return bg


def _render_photo(parts: list[Part], class_name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    colors = _photo_colors(class_name, rng)
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
    background, colors = _art_colors(rng)
    img = Image.new("RGB", (canvas, canvas), _jitter(rng, background[0], 20))
    draw = ImageDraw.Draw(img, "RGBA")  # RGBA fills blend onto the RGB canvas
    for _ in range(rng.integers(35, 60)):  # background brushwork
        _brush_stroke(
            draw,
            rng,
            rng.random(2) * canvas,
            canvas * rng.uniform(0.1, 0.4),
            canvas * rng.uniform(0.03, 0.08),
            _jitter(rng, _pick(rng, background), 30),
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
            _jitter(rng, (r, g, b), 35),
            int(rng.integers(90, 170)),
        )
    img = img.filter(ImageFilter.GaussianBlur(canvas / 120))
    noise = 14 * np.stack([_smooth_noise(rng, canvas, 10) for _ in range(3)], axis=-1)
    noise += rng.normal(0, 7, (canvas, canvas, 3)).astype(np.float32)
    return _to_image(np.asarray(img, np.float32) + noise)


def _render_cartoon(parts: list[Part], class_name: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    colors = _cartoon_colors(class_name, rng)

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


_STYLES: dict[str, Callable[[list[Part], str, np.random.Generator, int], Image.Image]] = {
    "photo": _render_photo,
    "art_painting": _render_art,
    "cartoon": _render_cartoon,
    "sketch": _render_sketch,
}


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------


def render_image(class_name: str, domain: str, rng: np.random.Generator, size: int) -> Image.Image:
    """One `size` x `size` RGB image of `class_name` in the style of `domain`."""
    if class_name not in _SHAPES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    if domain not in _STYLES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    canvas = size * _SUPERSAMPLE
    parts = _place(_SHAPES[class_name](rng), rng, canvas, _MAX_ROTATION.get(class_name, _DEFAULT_ROTATION))
    img = _STYLES[domain](parts, class_name, rng, canvas)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _is_complete(root: Path, args: dict[str, int]) -> bool:
    try:
        return json.loads((root / MARKER).read_text()) == args
    except (OSError, ValueError):
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def generate_builtin(
    root: Path,
    *,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
    size: int = 64,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ROOT/<domain>/<class>/<i:04d>.png for every domain and class, atomically; return root.

    Same arguments give byte-identical files. A complete data set with the same arguments is left as is;
    any other content at `root` is replaced once the new data set is fully written.
    """
    if images_per_class < 1 or size < 8 or seed < 0:
        raise ValueError("need images_per_class >= 1, size >= 8 and seed >= 0")
    root = Path(root)
    args = {"images_per_class": images_per_class, "size": size, "seed": seed, "version": VERSION}
    if _is_complete(root, args):
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    total, done = len(DOMAINS) * len(CLASSES) * images_per_class, 0
    try:
        _remove(tmp)
        for d, domain in enumerate(DOMAINS):
            for c, class_name in enumerate(CLASSES):
                folder = tmp / domain / class_name
                folder.mkdir(parents=True)
                for i in range(images_per_class):
                    rng = np.random.default_rng([seed, d, c, i])
                    render_image(class_name, domain, rng, size).save(folder / f"{i:04d}.png", format="PNG")
                    done += 1
                    if progress is not None:
                        progress(done, total)
        (tmp / MARKER).write_text(json.dumps(args, sort_keys=True))
        _move_into_place(tmp, root, args)
    finally:
        _remove(tmp)
    return root


def _move_into_place(tmp: Path, root: Path, args: dict[str, int]) -> None:
    """Swap the finished `tmp` in for `root`; on failure the previous content of `root` is put back."""
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    _remove(old)
    had_old = root.exists() or root.is_symlink()
    if had_old:
        os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:
        if _is_complete(root, args):  # a concurrent run has just put the same data set in place
            return
        if had_old and not root.exists():
            os.replace(old, root)
        raise
    finally:
        _remove(old)


def _remove_stale_siblings(root: Path) -> None:
    """Delete temporary folders left next to `root` by runs that were killed (POSIX only)."""
    if os.name != "posix":
        return
    for path in root.parent.glob(f".{root.name}.*-*"):
        kind, _, pid = path.name[len(root.name) + 2 :].rpartition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _remove(path)
        except OSError:  # alive, owned by someone else
            pass


def default_builtin_root() -> Path:
    """<cache>/builtin-pacs-v1; cache is $EDGEPRUNE_CACHE, $XDG_CACHE_HOME/edgeprune or ~/.cache/edgeprune."""
    if os.environ.get("EDGEPRUNE_CACHE"):
        cache = Path(os.environ["EDGEPRUNE_CACHE"]).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        cache = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "edgeprune"
    else:
        cache = Path.home() / ".cache" / "edgeprune"
    return cache / "builtin-pacs-v1"


def ensure_builtin(root: Path | None = None, **kwargs: object) -> Path:
    """The built-in data set at `root` (default: default_builtin_root()), generated if missing."""
    return generate_builtin(root if root is not None else default_builtin_root(), **kwargs)  # type: ignore[arg-type]
