"""Target `ort-cpu-fp16`: the float16 graph that strongly typed TensorRT builds from (float32 inputs and outputs),
run by onnxruntime on the CPU. It measures what float16 costs on the held-out domain before a GPU is at hand; it
is not a fast CPU engine (onnxruntime's CPU kernels compute most float16 ops through casts)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprune.export.fp16 import convert_fp16
from edgeprune.export.quantize import agreement

if TYPE_CHECKING:
    from edgeprune.export.engines import BuildContext


def build_ort_fp16(ctx: BuildContext, name: str, source: Path, model_sha256: str) -> dict[str, Any]:
    engine = ctx.engine_path(name)
    info = convert_fp16(source, engine)
    if ctx.check_images is not None:
        info["agreement_with_fp32"] = agreement(source, engine, ctx.check_images)
    ctx.extra.setdefault("float16", {})[name] = info
    return ctx.entry(engine)
