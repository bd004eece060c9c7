"""Writing the built-in data set to disk: ROOT/<domain>/<class>/<i:04d>.png plus a completion marker.

The data set is drawn into a temporary sibling folder and swapped in for ROOT only once it is complete.
`workspace.atomic_dir` cannot do that swap here: when the final rename fails, the data set must still accept
an identical one that a concurrent run has just put in place and otherwise put the previous content of ROOT
back, and ROOT may be a file or a (dangling) symlink. The temporary names follow atomic_dir's
(`.<name>.tmp-<pid>`, `.<name>.old-<pid>`), and leftovers of killed runs are removed on the next run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeprune.data.builtin.render import CLASSES, DOMAINS, render_image

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
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    try:
        _remove(tmp)
        _draw_images(tmp, images_per_class, size, seed, progress)
        (tmp / MARKER).write_text(json.dumps(args, sort_keys=True))
        _move_into_place(tmp, root, args)
    finally:
        _remove(tmp)
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


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
