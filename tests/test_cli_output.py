"""What the CLI prints: one JSON document on stdout with --json, whole names and unwrapped text when piped at 80
columns, every default in --help, choices the shell completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from edgeprune import __version__
from edgeprune.cli import EXIT_ERROR, app
from edgeprune.cli.choices import complete_metrics, complete_targets
from edgeprune.hardware import available_cores
from edgeprune.profiles import load_profile, profile_names

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args: object) -> Result:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def piped(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m edgeprune ARGS | cat` in an 80-column terminal: stdout is a pipe."""
    environ = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80", **env}
    return subprocess.run(
        [sys.executable, "-m", "edgeprune", *args], capture_output=True, text=True, env=environ, timeout=120
    )


def test_profiles_piped_at_80_columns_show_every_name_whole() -> None:
    found = piped("profiles")
    assert found.returncode == 0, found.stderr
    for name in profile_names():
        assert f" {name} " in found.stdout, found.stdout
    assert "…" not in found.stdout
    assert max(len(line) for line in found.stdout.splitlines()) <= 80, found.stdout


def test_names_stay_whole_when_the_terminal_is_narrower_than_them() -> None:
    found = piped("models", COLUMNS="30")
    assert found.returncode == 0, found.stderr
    assert "deit_tiny_patch16_224" in found.stdout and "…" not in found.stdout


@pytest.mark.parametrize("name", ["jetson-orin-nano", "jetson-agx-orin"])
def test_a_profile_written_through_a_pipe_reads_back(name: str, tmp_path: Path) -> None:
    shown = piped("profiles", name)
    assert shown.returncode == 0, shown.stderr
    path = tmp_path / "my.toml"
    path.write_text(shown.stdout)
    again = piped("profiles", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == shown.stdout.splitlines()[1:]  # all but the "# <source>" line
    assert load_profile(path) == load_profile(name)


def test_models_show_the_micro_models_settings() -> None:
    text = " ".join(invoke("models").stdout.split())
    assert "img_size=64" in text and "global_pool=avg" in text


@pytest.mark.parametrize(
    "args", [["profiles"], ["profiles", "cpu-x86"], ["models"]], ids=["profiles", "profile", "models"]
)
def test_json_is_one_document_on_stdout(args: list[str]) -> None:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    if args == ["profiles"]:
        assert [p["name"] for p in data] == profile_names()
        assert "hardware profiles" in result.stderr  # the table, out of stdout's way
    elif args == ["models"]:
        assert {"name": "vit-micro", "timm_name": "vit_tiny_patch16_224"}.items() <= data[-2].items()
    else:
        assert data["name"] == "cpu-x86" and data["backend"]["default_target"] == "ort-cpu-int8"


def test_runs_lists_the_workspace(finished_run) -> None:
    workspace, run = finished_run
    result = invoke("runs", "--workspace", workspace.root, "--json")
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["name"] == run.name and summary["status"] == "complete" and summary["amount"] == "r0.5"
    assert set(summary["held_out_accuracy"]) == {"baseline", "pruned", "finetuned"}
    table = invoke("runs", "--workspace", workspace.root)
    assert table.exit_code == 0 and run.name in table.stdout and "complete" in table.stdout


def test_bench_json_and_threads_capped_at_the_cores(run_copy) -> None:
    workspace, run = run_copy
    too_many = available_cores() + 1
    args = ["--target", "ort-cpu", "--threads", too_many, "--iterations", 2, "--warmup", 0, "--max-images", 16]
    result = invoke("bench", "--workspace", workspace.root, *args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run"] == run.name and report["threads"] == available_cores()
    assert report == json.loads(run.bench_path("ort-cpu", report["domain"]).read_text())
    stderr = " ".join(result.stderr.split())
    assert f"--threads asks for {too_many} threads" in stderr and "gate passed" in stderr


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"edgeprune {__version__}\n"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under a group (typer's click: typer vendors its own), with the words that invoke it."""
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found += _commands(command, path) if hasattr(command, "commands") else [(path, command)]
    return found


def _shows_default(param: Any) -> bool:
    """Typer shows a default that is set (an off flag has none); the help text states the others."""
    stated = "\\[default:" in (getattr(param, "help", None) or "")
    flag_off = getattr(param, "is_flag", False) and not param.secondary_opts and not param.default
    return stated or not (param.default is None or flag_off)


def test_help_shows_every_default() -> None:
    for path, command in _commands(typer.main.get_command(app)):
        params = [p for p in command.params if p.name != "help"]
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, result.output
        assert result.stdout.count("[default:") == sum(map(_shows_default, params)), (path, result.stdout)


def test_profile_option_takes_a_name_or_a_file(tmp_path: Path) -> None:
    result = invoke("bench", "--workspace", tmp_path, "--profile", "jetson-nano-2gb")
    assert result.exit_code == EXIT_ERROR and "unknown profile 'jetson-nano-2gb'" in result.output
    assert "jetson-orin-nano" in " ".join(result.output.split())
    own = tmp_path / "mine.toml"
    own.write_text((REPO / "profiles" / "cpu-x86.toml").read_text())
    result = invoke("bench", "--workspace", tmp_path, "--profile", own)
    assert result.exit_code == EXIT_ERROR and "no run found" in result.output  # past the option's check


def test_shell_completion_offers_the_choices() -> None:
    found = piped(_EDGEPRUNE_COMPLETE="complete_bash", COMP_WORDS="edgeprune bench --profile jetson", COMP_CWORD="3")
    assert found.stdout.split() == ["jetson-agx-orin", "jetson-orin-nano"], found
    assert complete_metrics("hessian,l") == ["hessian,l1", "hessian,l2"]
    assert complete_targets("trt-") == ["trt-fp32", "trt-fp16", "trt-int8"]


def test_readme_shows_json_and_completion() -> None:
    readme = (REPO / "README.md").read_text()
    assert "--json" in readme and "--install-completion" in readme and "edgeprune runs" in readme
