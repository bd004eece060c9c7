"""Pack a DG data set and a weights file small enough to travel (to a device machine with a transfer limit).

Lossy (default): images are re-encoded as WebP (the quality is a flag) with the `ROOT/<domain>/<class>/` layout
kept; a safetensors state dict is stored as float16 (edgeprune loads it back as float32). Say so wherever the packed
copy's results are quoted: it is close to, not identical with, the original.

`--lossless`: every image keeps its name and decodes to the same pixels. JPEGs are re-coded by `jpegtran -optimize
-progressive` (the same DCT coefficients; Debian's libjpeg-turbo-progs), PNGs whose three channels are equal are
stored as greyscale PNG, anything else is copied. Each file is decoded by edgeprune's own decoder before and after;
where they differ, the original bytes are kept. The weights are copied as they are. PACS: 191 MB -> 142 MB (sketch
54 -> 18 MB), in several transfers.

    python scripts/pack_dg_data.py ../shared/data/PACS .device/PACS --quality 60 \
        --weights ../shared/weights/deit_tiny_patch16_224.safetensors --weights-out .device/deit_tiny_fp16.safetensors
    python scripts/pack_dg_data.py ../shared/data/PACS .device/PACS --lossless --jpegtran /usr/bin/jpegtran
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from edgeprune.data.domains import IMAGE_SUFFIXES
from edgeprune.data.images import open_rgb


def _images(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pack_images(src: Path, dst: Path, quality: int) -> tuple[int, int]:
    count = size = 0
    for image in _images(src):
        out = dst / image.relative_to(src).with_suffix(".webp")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image) as im:
            im.convert("RGB").save(out, "WEBP", quality=quality, method=6)
        count += 1
        size += out.stat().st_size
    return count, size


def _recode(image: Path, out: Path, pixels: np.ndarray, jpegtran: str) -> None:
    if image.suffix.lower() in (".jpg", ".jpeg"):
        subprocess.run(
            [jpegtran, "-copy", "all", "-optimize", "-progressive", "-outfile", str(out), str(image)], check=True
        )
    elif image.suffix.lower() == ".png" and (pixels == pixels[..., :1]).all():
        Image.fromarray(np.ascontiguousarray(pixels[..., 0]), mode="L").save(out, "PNG", optimize=True)
    else:
        shutil.copyfile(image, out)


def pack_images_lossless(src: Path, dst: Path, jpegtran: str) -> tuple[int, int, int]:
    """Returns (images, files kept as they were because re-coding changed a pixel, bytes written)."""
    count = kept = size = 0
    for image in _images(src):
        out = dst / image.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(open_rgb(image))
        _recode(image, out, pixels, jpegtran)
        if not np.array_equal(np.asarray(open_rgb(out)), pixels):
            shutil.copyfile(image, out)
            kept += 1
        count += 1
        size += out.stat().st_size
    return count, kept, size


def pack_weights(src: Path, dst: Path) -> int:
    from safetensors.torch import load_file, save_file

    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(src).items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, dst)
    return dst.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--quality", type=int, default=60)
    parser.add_argument("--lossless", action="store_true", help="the same pixels, smaller files (see above)")
    parser.add_argument("--jpegtran", default="jpegtran", help="jpegtran program for --lossless")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--weights-out", type=Path)
    args = parser.parse_args()
    if args.lossless:
        count, kept, size = pack_images_lossless(args.src, args.dst, args.jpegtran)
        print(f"{count} images -> {args.dst} ({size / 2**20:.1f} MiB, lossless; {kept} kept as they were)")
    else:
        count, size = pack_images(args.src, args.dst, args.quality)
        print(f"{count} images -> {args.dst} ({size / 2**20:.1f} MiB, WebP quality {args.quality})")
    if args.weights and args.weights_out and args.lossless:
        args.weights_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.weights, args.weights_out)
        print(f"weights -> {args.weights_out} (copied)")
    elif args.weights and args.weights_out:
        print(f"weights -> {args.weights_out} ({pack_weights(args.weights, args.weights_out) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
