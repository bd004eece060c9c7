"""Exit codes and one-line errors of the CLI, and the whole path driven through it."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeprune.cli import EXIT_ERROR, EXIT_GATE_FAILED, app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == EXIT_ERROR, result.output
    # a library error prints "error: ...", an option out of its declared bounds is a usage error ("Invalid value")
    assert "error:" in result.output or "Invalid value" in result.output, result.output
    assert message in " ".join(result.output.split()), result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "not-a-model"], "unknown model 'not-a-model'"),
        (["--model", "vit-micro", "--ratio", "1.5"], "between 0 and 1"),
        (["--model", "vit-micro", "--ratio", "0"], "between 0 and 1"),
        (["--model", "vit-micro", "--random-init", "--data", "/nonexistent/pacs"], "does not exist"),
        (["--model", "vit-micro", "--checkpoint", "/nonexistent/w.safetensors"], "does not exist"),
        ([], "give --model"),
        (["--model", "vit-micro", "--random-init", "--max-steps-per-epoch", "0"], "--max-steps-per-epoch"),
        (["--model", "vit-micro", "--random-init", "--lr", "-1"], "learning rates must be positive"),
    ],
)
def test_prune_rejects_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    assert_user_error(invoke("prune", "--workspace", tmp_path, *args), message)


def test_prune_rejects_bad_data(tmp_path: Path, builtin_root: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    common = ["prune", "--workspace", tmp_path / "ws", "--model", "vit-micro", "--random-init"]
    assert_user_error(invoke(*common, "--data", empty), "no images (.jpg, .png, ...) in")
    assert_user_error(
        invoke(*common, "--data", builtin_root, "--target-domain", "clipart"), "unknown --target-domain 'clipart'"
    )
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"junk")
    assert_user_error(
        invoke(
            "prune",
            "--workspace",
            tmp_path / "ws",
            "--model",
            "vit-micro",
            "--data",
            builtin_root,
            "--checkpoint",
            corrupt,
        ),
        "could not read checkpoint",
    )
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


@pytest.mark.parametrize("command", ["export", "bench"])
def test_export_and_bench_need_a_run(command: str, tmp_path: Path) -> None:
    assert_user_error(invoke(command, "--workspace", tmp_path), "no run found")
    assert_user_error(invoke(command, "--workspace", tmp_path, "--run", "missing"), "no run named 'missing'")


def test_unknown_and_unbuilt_targets(finished_run) -> None:
    workspace, run = finished_run
    for command, option, value in (("export", "--target", "tflite"), ("prune", "--metric", "magnitude")):
        result = invoke(command, "--workspace", workspace.root, option, value)
        assert result.exit_code == EXIT_ERROR and "Invalid value for" in result.output and value in result.output
    assert_user_error(
        invoke("bench", "--workspace", workspace.root, "--target", "onnx"), "run `edgeprune export --target onnx` first"
    )


def test_whole_path_through_the_cli(builtin_root: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    result = invoke(
        "prune",
        "--workspace",
        ws,
        "--run",
        "cli",
        "--model",
        "deit-micro",
        "--random-init",
        "--data",
        builtin_root,
        "--metric",
        "taylor",
        "--baseline-epochs",
        "1",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--calib-batches",
        "1",
        "--batch-size",
        "16",
        "--workers",
        "0",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert "per-block widths" in result.stderr  # the tables, with --json, out of stdout's way
    summary = json.loads(result.stdout)
    assert summary["run"] == "cli" and summary["prune_report"]["metric"] == "taylor"
    assert set(summary["metrics"]) == {"baseline", "pruned", "finetuned"}
    assert_user_error(
        invoke(
            "prune", "--workspace", ws, "--run", "cli", "--model", "deit-micro", "--random-init", "--data", builtin_root
        ),
        "already exists",
    )
    result = invoke("export", "--workspace", ws, "--target", "onnx", "--parity-images", "8", "--json")
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert exported["build"]["target"] == "onnx" and exported["parity"]["passed"] and exported["bundle"] is None
    result = invoke("bench", "--workspace", ws, "--target", "onnx", "--iterations", "3", "--warmup", "1")
    assert result.exit_code == 0, result.output
    report = json.loads((ws / "cli" / "bench" / "onnx-sketch.json").read_text())
    assert report["gate"]["passed"] and report["target"] == "onnx"
    result = invoke("bench", "--workspace", ws, "--target", "onnx", "--iterations", "2", "--max-drop", "-1")
    assert result.exit_code == EXIT_GATE_FAILED and "gate failed" in result.output


def test_help_has_examples() -> None:
    for command in ("prune", "export", "bench", "demo"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output
