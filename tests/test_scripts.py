"""The tools in scripts/ still run: a short benchmark run, and the per-command timer.

Their figures are not checked here (speed belongs in the benchmark's own report); what
is checked is that a run completes against both servers, every message arrives exactly
once and in order (the benchmark fails otherwise), and the figures are reported.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_runs_a_pubsub_and_a_request_case(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("bench")
    cases = "fanout-S10,ping_mbulk-P16" if shutil.which("redis-benchmark") else "fanout-S10"
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--only", cases, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "fan-out S=10" in table
    runs = json.loads(out.read_text())["runs"]
    servers = {"respd", "redis"} if shutil.which("redis-server") else {"respd"}
    for case in cases.split(","):
        done = {run["server"] for run in runs if run["case"] == case and not run["error"]}
        assert done == servers, case
    for run in runs:
        metrics = run["metrics"]
        assert all(value > 0 for key, value in metrics.items() if key != "sys_us"), run
        assert 0 <= metrics["sys_us"] <= metrics["cpu_us"], run  # the system part of it


def test_micro_step_times_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    micro = load("micro_step")
    assert micro.main(["--batches", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(micro.CASES)
    assert all(float(line.split()[1]) > 0 for line in lines)
