"""Built-in stand-in for PACS, drawn procedurally: an offline default data set with PACS's layout
(4 style domains x 7 object classes) and a real domain gap between photo, painting, cartoon and sketch styles.

Modules: `shapes` (the seven classes as drawing primitives, and their placement on a canvas), `palettes`
(colours), `styles` (the four domain renderers), `render` (one image) and `writer` (the data set on disk).
"""

from __future__ import annotations

from edgeprune.data.builtin.render import CLASSES, DOMAINS, render_image
from edgeprune.data.builtin.writer import (
    DEFAULT_IMAGES_PER_CLASS,
    MARKER,
    VERSION,
    default_builtin_root,
    ensure_builtin,
    generate_builtin,
)

__all__ = [
    "CLASSES",
    "DEFAULT_IMAGES_PER_CLASS",
    "DOMAINS",
    "MARKER",
    "VERSION",
    "default_builtin_root",
    "ensure_builtin",
    "generate_builtin",
    "render_image",
]
