"""Shared helpers of the ops tests: repository paths, YAML/JSON loading, dashboard walking."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
VENV_BIN = ROOT / ".venv" / "bin"

COMPOSE_MAIN = ROOT / "docker-compose.yml"
COMPOSE_NOGPU = ROOT / "docker-compose.nogpu.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROMETHEUS_YML = ROOT / "prometheus.yml"
ALERTS_YML = ROOT / "prometheus-alerts.yml"
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# Grafana's built-in variables that the dashboards may use.
BUILTIN_VARS = {"__rate_interval", "__interval", "__range"}


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_dashboard(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def panels_of(dashboard):
    """Every non-row panel, with the title of the row it sits under (or None)."""
    out = []
    row = None
    for p in dashboard["panels"]:
        if p.get("type") == "row":
            row = p.get("title")
            for inner in p.get("panels", []):  # collapsed rows keep their panels inside
                out.append((row, inner))
            continue
        out.append((row, p))
    return out


def variables_in(expr):
    return set(re.findall(r"\$\{?(\w+)\}?", expr))


def tool(name):
    """A command-line tool: from the project's virtualenv first, then PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make test-ops`, which installs it")
    return found
