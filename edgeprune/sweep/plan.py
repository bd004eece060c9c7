"""From a spec to cells: the grid expanded, each cell named by its settings, one baseline per (model, held-out
domain, seed) group, and each cell's PruneRequest."""

from __future__ import annotations

from pathlib import Path

from edgeprune.errors import EdgepruneError
from edgeprune.progress import Reporter
from edgeprune.requests import PruneRequest
from edgeprune.sweep.record import CellRecord
from edgeprune.sweep.spec import ALL_DOMAINS, SweepSpec


def data_domains(spec: SweepSpec, reporter: Reporter) -> list[str]:
    """The data set's domains (the built-in set is generated on first use); images are listed, not opened."""
    from edgeprune.data.domains import discover
    from edgeprune.pipeline.context import resolve_data_root

    root = resolve_data_root(Path(spec.data) if spec.data else None, reporter)
    return list(discover(root, verify=False, classes_from=spec.prune.get("classes_from")).domains)


def held_out_domains(spec: SweepSpec, available: list[str]) -> list[str]:
    if ALL_DOMAINS in spec.domains:
        if len(spec.domains) > 1:
            raise EdgepruneError(f"--domains {ALL_DOMAINS} already holds out every domain: give it alone")
        return list(available)
    unknown = [d for d in spec.domains if d not in available]
    if unknown:
        raise EdgepruneError(
            f"unknown domain(s) {', '.join(unknown)}: the data set's domains are {', '.join(available)} "
            f"(or --domains {ALL_DOMAINS})"
        )
    return list(spec.domains)


def cell_name(sweep: str, model: str, metric: str, tag: str, domain: str, seed: int) -> str:
    """`<sweep>-<model>-<metric>-<amount>-<domain>-s<seed>`: the cell's run name, which says what it is."""
    return f"{sweep}-{model.replace('_', '-').replace('/', '-')}-{metric}-{tag}-{domain}-s{seed}"


def plan_cells(spec: SweepSpec, domains: list[str]) -> list[CellRecord]:
    """Every cell, grouped by (model, seed, domain); the first cell of a group trains the group's baseline."""
    assert spec.name is not None
    cells = []
    for model in spec.models:
        for seed in spec.seeds:
            for domain in domains:
                leader = None
                for metric in spec.metrics:
                    for amount in spec.amounts():
                        name = cell_name(spec.name, model, metric, amount.tag(), domain, seed)
                        cells.append(
                            CellRecord(
                                name=name,
                                model=model,
                                metric=metric,
                                amount_kind=amount.kind,
                                amount_value=amount.value,
                                domain=domain,
                                seed=seed,
                                baseline_from=leader,
                            )
                        )
                        leader = leader or name
    return cells


def prune_request(spec: SweepSpec, cell: CellRecord, baseline_run: str | None = None) -> PruneRequest:
    """The request `edgeprune prune` would make for this cell."""
    amount = cell.amount
    return PruneRequest(
        model=cell.model,
        metric=cell.metric,
        ratio=amount.value if amount.kind == "ratio" else PruneRequest.ratio,
        target_macs=amount.value if amount.kind == "macs" else None,
        data=Path(spec.data) if spec.data else None,
        target_domain=cell.domain,
        seed=cell.seed,
        random_init=spec.random_init,
        baseline_epochs=spec.baseline_epochs,
        epochs=spec.epochs,
        max_steps_per_epoch=spec.max_steps_per_epoch,
        workers=spec.workers,
        baseline_run=baseline_run,
        **_prune_options(spec),
    )


def _prune_options(spec: SweepSpec) -> dict[str, object]:
    options = dict(spec.prune)
    if options.get("checkpoint") is not None:
        options["checkpoint"] = Path(options["checkpoint"])
    return options


def check_plan(spec: SweepSpec, cells: list[CellRecord]) -> None:
    """Refuse what would fail in every cell (an unknown model, a missing checkpoint, bad options) before any runs."""
    from edgeprune.models.loading import require_weights_source
    from edgeprune.profiles import load_profile

    if spec.profile is not None:
        load_profile(spec.profile)
    checked: set[str] = set()
    for cell in cells:
        if cell.model not in checked:
            checked.add(cell.model)
            try:
                model = prune_request(spec, cell).validate()
            except TypeError as exc:  # a prune option of the wrong type
                raise EdgepruneError(f"sweep spec, prune options: {exc}") from None
            # create_model's rule, checked before any cell runs rather than failing in every cell
            require_weights_source(
                model,
                spec.prune.get("checkpoint"),
                spec.random_init,
                hint="add --random-init (random_init = true), or --set checkpoint=FILE",
            )
