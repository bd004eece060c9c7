"""Every user error the CLI can meet is one line, exit 2, no traceback, no terminal codes: `error: ...` from
edgeprune, or typer's own usage box around one `Invalid value for ...` line for an option out of its range."""

from __future__ import annotations

import errno
import importlib
import os
import shutil
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from edgeprune.cli import EXIT_ERROR, app
from edgeprune.cli.app import user_errors
from edgeprune.workspace import atomic_write_bytes

runner = CliRunner()


def _odd_data(root: Path) -> Path:
    for domain, classes in (("photo", ("cat", "dog")), ("sketch", ("cat", "wolf"))):
        for klass in classes:
            (root / domain / klass).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / domain / klass / "0.png")
    return root


def _cases(tmp: Path, builtin: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp / "text.safetensors"
    text.write_text("not tensors")
    a_file = tmp / "a-file"
    a_file.write_text("")
    empty = tmp / "empty-ws"
    micro = ["prune", "--model", "vit-micro", "--random-init", "-w", str(empty)]
    return {
        "unknown model": (["prune", "--model", "nope"], "unknown model 'nope'"),
        "missing checkpoint": (["prune", "--model", "deit-tiny", "--checkpoint", str(tmp / "x.pth")], "does not exist"),
        "ratio out of range": ([*micro, "--ratio", "1.5"], "ratio"),
        "cost exponent without cost": (
            [*micro, "--normalization", "none", "--cost-exponent", "0.5"],
            "give --normalization cost",
        ),
        "data missing": ([*micro, "--data", str(tmp / "nowhere")], "does not exist"),
        "data is a file": ([*micro, "--data", str(a_file)], "is a file"),
        "classes differ": ([*micro, "--data", str(_odd_data(tmp / "odd"))], "different class folders"),
        "unknown domain": ([*micro, "--data", str(builtin), "--target-domain", "clipart"], "unknown --target-domain"),
        "text checkpoint": (
            ["prune", "--model", "vit-micro", "--checkpoint", str(text), "--data", str(builtin), "-w", str(empty)],
            "not a valid .safetensors file",
        ),
        "workspace under a file": ([*micro[:-1], str(a_file / "ws")], "cannot write the workspace"),
        "resume of no run": (["prune", "--resume", "--run", "nope", "-w", str(empty)], "no run named 'nope'"),
        "export without runs": (["export", "-w", str(empty)], "no run found"),
        "bench of no run": (["bench", "--run", "nope", "-w", str(empty)], "no run named 'nope'"),
        "report without sweeps": (["report", "-w", str(empty)], "no sweep"),
        "unknown profile": (["profiles", "nope"], "nope"),
        "build of no bundle": (["build", str(tmp / "no-bundle")], "bundle"),
    }


def test_every_user_error_is_one_line(builtin_root: Path, tmp_path: Path) -> None:
    for name, (args, expected) in _cases(tmp_path, builtin_root).items():
        result = runner.invoke(app, args)
        output = result.output
        lines = [line for line in output.splitlines() if line.startswith("error:") or "Invalid value" in line]
        assert result.exit_code == EXIT_ERROR, f"{name}: exit {result.exit_code}\n{output}"
        assert "Traceback" not in output and "\x1b" not in output, f"{name}:\n{output}"
        assert len(lines) == 1 and expected in lines[0], f"{name}: {output}"


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "engine.onnx"
    real_write = Path.write_bytes

    def half_then_full(self: Path, data: bytes) -> int:
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary

    @user_errors
    def command() -> None:
        atomic_write_bytes(target, b"x" * 1000)

    messages: list[str] = []
    cli_app = importlib.import_module("edgeprune.cli.app")  # the module (edgeprune.cli.app is also the Typer app)
    monkeypatch.setattr(cli_app.err, "print", lambda text, **_: messages.append(text))
    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == EXIT_ERROR
    assert len(messages) == 1 and "no space left on the disk writing" in messages[0]
    shutil.rmtree(tmp_path, ignore_errors=True)
