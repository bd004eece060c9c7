"""Measure a latency table: probes over a grid of widths, a fit, its error on held-back probes, and the unpruned
model measured whole."""

from __future__ import annotations

import sys
import time

import numpy as np
from torch import nn

from edgeprune.export.attention_fusion import ATTENTION_OP
from edgeprune.hardware import capped_threads, cpu_isa, cpu_model, describe_device
from edgeprune.latency.fit import TERMS, fit_coefficients, model_terms, relative_errors
from edgeprune.latency.measure import check_measurable, measure_p50
from edgeprune.latency.probes import PROBE_CLASSES, probe_model
from edgeprune.latency.table import FitError, LatencyTable, Probe, Reference, TableKey
from edgeprune.latency.widths import Widths, grid, model_widths, sample_grid
from edgeprune.models.loading import create_model
from edgeprune.models.registry import ModelSpec
from edgeprune.pipeline.export import backend_version
from edgeprune.profiles import Profile
from edgeprune.progress import Reporter
from edgeprune.prune.adapters import adapter_for
from edgeprune.prune.counting import input_size
from edgeprune.targets import Target
from edgeprune.workspace import utc_now

DEFAULT_PROBES = 28
HELD_OUT_EVERY = 4  # every 4th block probe is kept out of the fit
REMEASURE_BELOW = -0.2  # a probe measured this much slower than the fit predicts is measured again (at most twice)
PROBE_DEPTH = 4  # blocks per probe: enough that the blocks, not the fixed parts or noise, dominate


def _device(target: Target) -> str:
    if target.onnxruntime_cpu:
        return f"{cpu_isa()} {cpu_model()}"
    return describe_device().get("gpu", "unknown GPU")


def unpruned_model(spec: ModelSpec) -> nn.Module:
    return create_model(spec, PROBE_CLASSES, random_init=True)


def table_key(spec: ModelSpec, model: nn.Module, profile: Profile, target: Target) -> TableKey:
    """The key of a table measured here, now, for `model` (unpruned) on `target` with `profile`'s settings."""
    blocks = model_widths(model)
    return TableKey(
        model=spec.timm_name,
        family=adapter_for(model, spec.timm_name).family,
        image_size=list(input_size(model)),
        depth=len(blocks),
        full=blocks[0].to_json(),
        profile=profile.name,
        target=target.name,
        backend=target.backend,
        backend_version=backend_version(target),
        batch=profile.batch.opt,
        threads=profile.backend.threads,
        threads_used=capped_threads(profile.backend.threads),
        device=_device(target),
        round_to=profile.latency.round_to,
        fused_attention=ATTENTION_OP if target.fuses_attention else None,
    )


def build_table(
    spec: ModelSpec,
    model: nn.Module,
    key: TableKey,
    profile: Profile,
    target: Target,
    reporter: Reporter,
    probes: int = DEFAULT_PROBES,
    seed: int = 0,
) -> LatencyTable:
    """Measure the table of `spec` (`model`: unpruned, `key`: its `table_key`)."""
    check_measurable(target)
    start = time.perf_counter()
    model.eval()
    full = Widths.from_json(key.full)
    step = profile.latency.round_to
    plan = [(0, Widths(e, 1, 1, 1)) for e in grid(full, step)["embed"]]
    plan += [(PROBE_DEPTH, w) for w in sample_grid(full, probes, seed, step)]

    def measure(depth: int, widths: Widths) -> float:
        return measure_p50(probe_model(spec, depth, widths), target, profile, key.batch, key.threads_used)

    measured: list[Probe] = []
    with reporter.task(f"latency table {spec.name} on {target.name}", len(plan) + 1) as advance:
        for i, (depth, widths) in enumerate(plan):
            p50 = measure(depth, widths)
            held_out = depth > 0 and i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
            measured.append(Probe(depth=depth, widths=widths.to_json(), p50_ms=p50, held_out=held_out))
            advance(1, f"{widths.embed}/{widths.heads}x{widths.head_dim}/{widths.mlp}: {p50:.2f} ms")
        whole_ms = measure_p50(model, target, profile, key.batch, key.threads_used)
        advance(1, f"unpruned: {whole_ms:.2f} ms")
    rows = np.stack([_terms(p) for p in measured])
    fitted = np.array([not p.held_out for p in measured])
    for _ in range(2):  # load elsewhere only ever slows a probe: measure the suspects again, keep the faster
        latencies = np.array([p.p50_ms for p in measured])
        errors = relative_errors(rows, latencies, fit_coefficients(rows[fitted], latencies[fitted]))
        suspects = list(np.flatnonzero(errors < REMEASURE_BELOW))
        if not suspects:
            break
        with reporter.task(f"measuring {len(suspects)} outlying probes again", len(suspects)) as advance:
            for i in suspects:
                probe = measured[i]
                probe.p50_ms = min(probe.p50_ms, measure(probe.depth, Widths.from_json(probe.widths)))
                advance(1)
    latencies = np.array([p.p50_ms for p in measured])
    coefficients = fit_coefficients(rows[fitted], latencies[fitted])
    errors = np.abs(relative_errors(rows, latencies, coefficients)) * 100
    whole_fit = float(model_terms(full.embed, [full] * key.depth) @ coefficients)
    return LatencyTable(
        key=key,
        created=utc_now(),
        seconds=round(time.perf_counter() - start, 1),
        command=" ".join(["edgeprune", *sys.argv[1:]]),
        terms=list(TERMS),
        coefficients=coefficients.tolist(),
        probes=measured,
        error=FitError(
            held_out_points=int((~fitted).sum()),
            median_pct=float(np.median(errors[~fitted])) if (~fitted).any() else float("nan"),
            max_pct=float(errors[~fitted].max()) if (~fitted).any() else float("nan"),
            fit_median_pct=float(np.median(errors[fitted])),
        ),
        reference=Reference(p50_ms=whole_ms, fitted_ms=whole_fit),
    )


def _terms(probe: Probe) -> np.ndarray:
    widths = Widths.from_json(probe.widths)
    return model_terms(widths.embed, [widths] * probe.depth)
