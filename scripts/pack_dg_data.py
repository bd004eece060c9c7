"""Pack a DG data set and a weights file small enough to travel (to a device machine with a transfer limit).

Images are re-encoded as WebP (lossy; the quality is a flag) with the `ROOT/<domain>/<class>/` layout kept; a
safetensors state dict is stored as float16 (edgeprune loads it back as float32). Say so wherever the packed copy's
results are quoted: it is close to, not identical with, the original.

    python scripts/pack_dg_data.py ../shared/data/PACS .device/PACS --quality 60 \
        --weights ../shared/weights/deit_tiny_patch16_224.safetensors --weights-out .device/deit_tiny_fp16.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from edgeprune.data.domains import IMAGE_SUFFIXES


def pack_images(src: Path, dst: Path, quality: int) -> tuple[int, int]:
    count = size = 0
    for image in sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        out = dst / image.relative_to(src).with_suffix(".webp")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image) as im:
            im.convert("RGB").save(out, "WEBP", quality=quality, method=6)
        count += 1
        size += out.stat().st_size
    return count, size


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
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--weights-out", type=Path)
    args = parser.parse_args()
    count, size = pack_images(args.src, args.dst, args.quality)
    print(f"{count} images -> {args.dst} ({size / 2**20:.1f} MiB, WebP quality {args.quality})")
    if args.weights and args.weights_out:
        print(f"weights -> {args.weights_out} ({pack_weights(args.weights, args.weights_out) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
