"""Starts real vllm-sim and wasmgate processes for the SDK tests."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
MODEL = "sdk-model"


def _spawn(args):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the process reports its address
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc, line.strip().removeprefix("listening on ")


@pytest.fixture(scope="session")
def gateway():
    sim, sim_url = _spawn([
        str(TARGET / "debug" / "vllm-sim"), "--port", "0", "--model", MODEL,
        "--mode", "echo", "--ttft-ms", "5", "--itl-ms", "2",
    ])
    comps = Path(tempfile.mkdtemp())
    (comps / "guards").mkdir()
    (comps / "agents").mkdir()
    shutil.copy(TARGET / "wasm32-wasip2" / "component" / "guard.wasm", comps / "guards" / "guard.wasm")
    shutil.copy(TARGET / "wasm32-wasip2" / "component" / "agent.wasm", comps / "agents" / "expert.wasm")
    (comps / "agents" / "expert.toml").write_text(
        f'tools = ["kb-search", "now"]\nkb_dir = "{ROOT / "docs"}"\n'
    )
    gate, gate_url = _spawn([
        str(TARGET / "debug" / "wasmgate"), "serve", "--listen", "127.0.0.1:0",
        "--upstream", f"{sim_url}/v1", "--components", str(comps),
    ])
    yield gate_url
    for p in (gate, sim):
        p.terminate()
        p.wait(timeout=10)
    shutil.rmtree(comps, ignore_errors=True)
