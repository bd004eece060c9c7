"""Writing the built-in data set to disk: ROOT/<domain>/<class>/<i:04d>.png plus a completion marker.

The data set is drawn into a temporary sibling folder and swapped in for ROOT only once it is complete
(`workspace.atomic_dir`: an identical data set that a concurrent run has just put in place is accepted, anything
else at ROOT is put back if the swap fails). Leftovers of killed runs (`.<name>.tmp-<pid>`, `.<name>.old-<pid>`)
are removed on the next run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeprune.data.builtin.render import CLASSES, DOMAINS, render_image
from edgeprune.workspace import atomic_dir, remove_path

VERSION = 1
DEFAULT_IMAGES_PER_CLASS = 80  # 2,240 images: enough for the demo's from-scratch ViT to learn the sources
MARKER = ".complete"


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
    with atomic_dir(root, already_published=lambda path: _is_complete(path, args)) as tmp:
        _draw_images(tmp, images_per_class, size, seed, progress)
        (tmp / MARKER).write_text(json.dumps(args, sort_keys=True))
    return root


def _draw_images(
    folder: Path, images_per_class: int, size: int, seed: int, progress: Callable[[int, int], None] | None
) -> None:
    """Every image into FOLDER/<domain>/<class>/; each is seeded by its own (seed, domain, class, index)."""
    total, done = len(DOMAINS) * len(CLASSES) * images_per_class, 0
    for d, domain in enumerate(DOMAINS):
        for c, class_name in enumerate(CLASSES):
            out = folder / domain / class_name
            out.mkdir(parents=True)
            for i in range(images_per_class):
                rng = np.random.default_rng([seed, d, c, i])
                render_image(class_name, domain, rng, size).save(out / f"{i:04d}.png", format="PNG")
                done += 1
                if progress is not None:
                    progress(done, total)


def _is_complete(root: Path, args: dict[str, int]) -> bool:
    try:
        return json.loads((root / MARKER).read_text()) == args
    except (OSError, ValueError):
        return False


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
            remove_path(path)
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
