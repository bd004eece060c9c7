"""The seven object classes of the built-in data set, as drawing primitives in a unit frame.

Each class function draws a randomly varied instance as a list of `Part`s, facing +x, back to front; `place`
then flips, rotates, scales and moves them onto a pixel canvas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np


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


SHAPES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "dog": _dog,
    "elephant": _elephant,
    "giraffe": _giraffe,
    "guitar": _guitar,
    "horse": _horse,
    "house": _house,
    "person": _person,
}
MAX_ROTATION = {"guitar": 35.0}  # degrees; others get the default below
DEFAULT_ROTATION = 10.0


def place(parts: list[Part], rng: np.random.Generator, canvas: int, max_rotation: float) -> list[Part]:
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
