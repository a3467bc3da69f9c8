"""Checks of the Docker Compose stack that need no Docker engine (none runs here).

- both compose files through `docker-compose config` (Compose v1, Debian) and the compose-spec
  JSON schema (what Compose v2 validates against), plus the contract between them and the
  Prometheus and Grafana files they mount;
- the Dockerfile through hadolint, and its build steps against the workspace;
- the image entrypoint through shellcheck, and run for real;
- prometheus.yml and the alert rules through promtool, including the rules' unit tests;
- the dashboards' JSON structure (the PromQL itself is proven in test_dashboards.py).
"""

import functools
import json
import os
import re
import select
import shlex
import subprocess
import tempfile
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from opslib import (
    ALERTS_YML,
    BUILTIN_VARS,
    COMPOSE_MAIN,
    COMPOSE_NOGPU,
    DASHBOARDS,
    DOCKERFILE,
    GRAFANA,
    PROMETHEUS_YML,
    ROOT,
    TARGET,
    load_dashboard,
    load_yaml,
    panels_of,
    tool,
    variables_in,
)

GPU_SERVICES = {"vllm", "dcgm-exporter"}
MAIN_SERVICES = {"vllm", "dcgm-exporter", "wasmgate", "prometheus", "grafana"}
NOGPU_SERVICES = {"vllm", "wasmgate", "prometheus", "grafana"}
REQUIRED_ALERTS = {
    "HighErrorRate", "HighP99Latency", "TTFTRegression", "UpstreamDown", "GuardFaults",
    "ComponentReloadRejected", "KVCacheNearFull", "GPUMemoryNearFull",
}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120, **kw)


@functools.lru_cache(maxsize=None)
def _compose_config_text(path, env_file):
    r = run([tool("docker-compose"), "--project-directory", str(ROOT), "--env-file", str(env_file),
             "-f", str(path), "config"],
            env={k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))})
    assert r.returncode == 0, f"docker-compose config {path.name}:\n{r.stderr}"
    return r.stdout


def compose_config(path, env_file):
    """The resolved configuration, as Compose v1 prints it (interpolated, extends applied)."""
    return yaml.safe_load(_compose_config_text(Path(path), Path(env_file)))


_ENV_DIR = tempfile.TemporaryDirectory(prefix="wasmgate-ops-")  # removed at interpreter exit
EMPTY_ENV = Path(_ENV_DIR.name) / "empty.env"
EMPTY_ENV.write_text("")


@pytest.fixture(scope="module", params=["defaults", ".env.example"])
def env_file(request):
    """Compose files are checked with no .env (the defaults) and with the committed example."""
    return ROOT / ".env.example" if request.param == ".env.example" else EMPTY_ENV


# ---------------------------------------------------------------------------------------------
# Compose


def test_compose_files_pass_docker_compose_config(env_file):
    main = compose_config(COMPOSE_MAIN, env_file)
    nogpu = compose_config(COMPOSE_NOGPU, env_file)
    assert set(main["services"]) == MAIN_SERVICES
    assert set(nogpu["services"]) == NOGPU_SERVICES


def test_compose_files_match_the_compose_spec_schema():
    r = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
             str(COMPOSE_MAIN), str(COMPOSE_NOGPU)])
    assert r.returncode == 0, r.stdout + r.stderr


def _devices(service):
    return (service.get("deploy", {}).get("resources", {}).get("reservations", {})
            .get("devices", []))


def test_gpu_services_reserve_an_nvidia_gpu_and_the_nogpu_variant_none(env_file):
    main = compose_config(COMPOSE_MAIN, env_file)
    for name in GPU_SERVICES:
        devices = _devices(main["services"][name])
        assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"]
                               for d in devices), name
    nogpu = compose_config(COMPOSE_NOGPU, env_file)
    for name, service in nogpu["services"].items():
        assert not _devices(service), f"{name} reserves a GPU in the no-GPU variant"
        assert "runtime" not in service, name


def test_images_are_pinned_and_built_images_name_a_dockerfile_stage(env_file):
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I))
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        for name, service in compose_config(path, env_file)["services"].items():
            if "build" in service:
                build = service["build"]
                assert Path(build["context"]) == ROOT, name
                assert (ROOT / build["dockerfile"]) == DOCKERFILE, name
                assert build["target"] in stages, f"{name}: no stage {build['target']}"
                continue
            image = service["image"]
            repo, _, tag = image.rpartition(":")
            assert repo and "/" not in tag and tag not in ("", "latest"), \
                f"{name}: image {image} is not pinned to a version tag"
    vllm = load_yaml(COMPOSE_MAIN)["services"]["vllm"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", vllm["image"])


def test_gateway_service_is_wired_to_vllm_and_the_components_folder(env_file):
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        gate = compose_config(path, env_file)["services"]["wasmgate"]
        assert gate["environment"]["WASMGATE_UPSTREAM"] == "http://vllm:8000/v1"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in gate["volumes"]}
        assert Path(mounts["/srv/components"]) == ROOT / "deploy" / "components"
        # Secrets come from .env / the shell only: never a value in the compose file.
        for secret in ("WASMGATE_API_KEYS", "WASMGATE_ADMIN_TOKEN"):
            assert gate["environment"].get(secret) is None, secret
    for kind in ("guards", "agents"):
        assert (ROOT / "deploy" / "components" / kind).is_dir()


def _image_env(stage):
    """ENV of a Dockerfile stage (KEY=VALUE pairs), following `FROM <parent> AS <stage>`."""
    env, current = {}, None
    for word, args in _dockerfile_instructions():
        if word == "FROM":
            current = args.split()[-1]
        elif word == "ENV" and current == stage:
            env.update(a.split("=", 1) for a in shlex.split(args))
    return env


def test_gateway_starts_with_the_image_and_compose_settings(env_file, tmp_path):
    """The real wasmgate binary, with the image's ENV and the compose file's environment
    (no keys: the stack's default), starts listening on all interfaces as in the container.
    Nothing is sent to it; it is stopped as soon as it reports its address."""
    binary = TARGET / "debug" / "wasmgate"
    if not binary.exists():
        pytest.fail("wasmgate is not built: run `make test-ops`")
    (tmp_path / "guards").mkdir()
    (tmp_path / "agents").mkdir()
    env = {"PATH": os.environ["PATH"], **_image_env("wasmgate")}
    compose_env = compose_config(COMPOSE_MAIN, env_file)["services"]["wasmgate"]["environment"]
    env.update({k: str(v) for k, v in compose_env.items() if v is not None})
    assert env["WASMGATE_LISTEN"].startswith("0.0.0.0:")
    env.update(WASMGATE_LISTEN="0.0.0.0:0", WASMGATE_COMPONENTS=str(tmp_path),
               WASMGATE_UI_DIR=str(tmp_path))
    proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert line.startswith("listening on http://0.0.0.0:"), f"{line!r}\n{err[-2000:]}"


def test_bind_mounts_exist_and_ports_bind_to_loopback_by_default():
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        for name, service in compose_config(path, EMPTY_ENV)["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("/"):
                    assert Path(source).exists(), f"{name}: {source} does not exist"
            for port in service.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is public"


def test_long_running_services_have_health_checks(env_file):
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        for name, service in compose_config(path, env_file)["services"].items():
            if name == "dcgm-exporter":  # NVIDIA's image; Prometheus' `up` covers it
                continue
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_every_compose_variable_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        text = path.read_text()
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
        # `NAME:` with no value passes NAME through from .env or the shell.
        used |= {m for m in re.findall(r"^\s+([A-Z][A-Z0-9_]*):\s*(?:#.*)?$", text, re.M)}
        missing = used - documented
        assert not missing, f"{path.name} uses {sorted(missing)}, not in .env.example"


def test_real_env_file_is_ignored_by_git():
    r = run(["git", "check-ignore", "-q", ".env"])
    assert r.returncode == 0, ".env must be in .gitignore"
    r = run(["git", "check-ignore", "-q", ".env.example"])
    assert r.returncode == 1, ".env.example must be committed"


def test_prometheus_service_mounts_the_config_and_every_rule_file(env_file):
    prom = load_yaml(PROMETHEUS_YML)
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        service = compose_config(path, env_file)["services"]["prometheus"]
        mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in service["volumes"]}
        assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_YML
        assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]
        for rule_file in prom["rule_files"]:
            in_container = os.path.normpath(os.path.join("/etc/prometheus", rule_file))
            assert mounts.get(in_container) == ROOT / rule_file, \
                f"{rule_file} is not mounted at {in_container}"


def test_scrape_targets_are_compose_services():
    prom = load_yaml(PROMETHEUS_YML)
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in prom["scrape_configs"]}
    assert targets == {"wasmgate": ["wasmgate:8080"], "vllm": ["vllm:8000"],
                       "dcgm-exporter": ["dcgm-exporter:9400"]}
    main = load_yaml(COMPOSE_MAIN)["services"]
    nogpu = load_yaml(COMPOSE_NOGPU)["services"]
    for job, [target] in targets.items():
        host = target.split(":")[0]
        assert host in main, f"{job} scrapes {host}, not a service"
        if host not in GPU_SERVICES - {"vllm"}:
            assert host in nogpu, f"no-GPU variant lacks {host}"


def test_grafana_is_provisioned_from_the_repository(env_file):
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    [ds] = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    prom = load_yaml(PROMETHEUS_YML)
    assert ds["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"], \
        "Grafana's timeInterval must equal the scrape interval ($__rate_interval depends on it)"
    [provider] = load_yaml(GRAFANA / "provisioning" / "dashboards" / "wasmgate.yml")["providers"]
    for path in (COMPOSE_MAIN, COMPOSE_NOGPU):
        service = compose_config(path, env_file)["services"]["grafana"]
        mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in service["volumes"]}
        assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
        assert mounts[provider["options"]["path"]] == GRAFANA / "dashboards"
        home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        rel = os.path.relpath(home, provider["options"]["path"])
        assert (GRAFANA / "dashboards" / rel).is_file(), home
    for dashboard_path in DASHBOARDS:
        d = load_dashboard(dashboard_path)
        for _, panel in panels_of(d):
            assert panel["datasource"]["uid"] == ds["uid"], (dashboard_path.name, panel["title"])
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == ds["uid"], (dashboard_path.name, panel["title"])


# ---------------------------------------------------------------------------------------------
# Dockerfile and image entrypoint


def test_dockerfile_passes_hadolint():
    r = run([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])
    assert r.returncode == 0, r.stdout + r.stderr


def _dockerignore_patterns():
    return [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def _ignored(rel):
    parts = Path(rel).parts
    for pattern in _dockerignore_patterns():
        pattern = pattern.removeprefix("**/")
        for i in range(1, len(parts) + 1):
            if fnmatch("/".join(parts[:i]), pattern) or fnmatch(parts[i - 1], pattern):
                return True
    return False


def _dockerfile_instructions():
    """(instruction, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_only_files_in_the_build_context():
    for word, args in _dockerfile_instructions():
        if word != "COPY" or "--from=" in args:
            continue
        *sources, _dest = [a for a in shlex.split(args) if not a.startswith("--")]
        for src in sources:
            if src == ".":
                continue
            assert (ROOT / src).exists(), f"COPY {src}: no such file"
            assert not _ignored(src), f"COPY {src}: excluded by .dockerignore"
    # The sources the build needs are in the context.
    for needed in ("Cargo.toml", "Cargo.lock", "host/src/main.rs", "wit", "vllm-sim/src/main.rs"):
        assert not _ignored(needed), f"{needed} is excluded by .dockerignore"
    assert _ignored("target/debug/wasmgate") and _ignored(".git/HEAD")


def test_entrypoint_is_executable_and_passes_shellcheck():
    script = ROOT / "docker" / "wasmgate-entrypoint.sh"
    assert os.access(script, os.X_OK)
    r = run([tool("shellcheck"), "--shell=sh", str(script)])
    assert r.returncode == 0, r.stdout + r.stderr


def _cargo_metadata():
    r = run(["cargo", "metadata", "--locked", "--no-deps", "--format-version", "1"])
    assert r.returncode == 0, f"Cargo.lock is out of date (the image builds with --locked):\n{r.stderr}"
    return json.loads(r.stdout)


def test_dockerfile_builds_workspace_packages_and_copies_their_artifacts():
    packages = {p["name"]: p for p in _cargo_metadata()["packages"]}
    ws = _workspace_rust_version()
    m = re.search(r"^ARG RUST_VERSION=(\S+)", DOCKERFILE.read_text(), re.M)
    assert m and _version(m.group(1)) >= _version(ws), \
        f"the image's Rust {m and m.group(1)} is older than the workspace's rust-version {ws}"

    artifacts = {}  # expected path under target/ -> package
    for word, args in _dockerfile_instructions():
        if word != "RUN":
            continue
        for command in re.split(r"&&", args):
            argv = shlex.split(command)
            if "cargo" not in argv or "build" not in argv:
                continue
            argv = argv[argv.index("cargo"):]
            assert "--locked" in argv, command
            profile = "release" if "--release" in argv else argv[argv.index("--profile") + 1]
            triple = argv[argv.index("--target") + 1] if "--target" in argv else None
            out_dir = f"target/{triple}/{profile}" if triple else f"target/{profile}"
            for i, a in enumerate(argv):
                if a != "-p":
                    continue
                name = argv[i + 1]
                assert name in packages, f"cargo build -p {name}: no such workspace package"
                for t in packages[name]["targets"]:
                    if "bin" in t["kind"]:
                        file = t["name"] + (".wasm" if triple and triple.startswith("wasm") else "")
                    elif "cdylib" in t["kind"] and triple:
                        file = t["name"].replace("-", "_") + ".wasm"
                    else:
                        continue
                    artifacts[f"{out_dir}/{file}"] = name
        for command in re.split(r"&&", args):
            argv = shlex.split(command)
            if argv[:1] == ["cp"] and argv[1].startswith("target/"):
                assert argv[1] in artifacts, \
                    f"`cp {argv[1]}`: no build step above produces it (built: {sorted(artifacts)})"


def test_dockerfile_make_steps_are_makefile_targets():
    """`make X VAR=value` in the Dockerfile: the target exists and honours the variable."""
    steps = []
    for word, args in _dockerfile_instructions():
        if word == "RUN":
            steps += [shlex.split(c) for c in re.split(r"&&", args) if shlex.split(c)[:1] == ["make"]]
    assert steps, "the Dockerfile builds the UI with `make ui`"
    for argv in steps:
        r = run(["make", "-n", *argv[1:]])
        assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
        for assignment in (a for a in argv[1:] if "=" in a):
            assert assignment.split("=", 1)[1] in r.stdout, f"{' '.join(argv)} ignores {assignment}"


def _workspace_rust_version():
    m = re.search(r'^rust-version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    return m.group(1)


def _version(v):
    return tuple(int(x) for x in v.split("."))


def _fake_defaults(tmp_path):
    defaults = tmp_path / "defaults"
    (defaults / "guards").mkdir(parents=True)
    (defaults / "agents").mkdir()
    (defaults / "guards" / "guard.wasm").write_bytes(b"\0asm guard")
    (defaults / "agents" / "agent.wasm").write_bytes(b"\0asm agent")
    return defaults


def _entrypoint(env, *command):
    return subprocess.run([str(ROOT / "docker" / "wasmgate-entrypoint.sh"), *command],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"], **env})


def test_entrypoint_installs_the_defaults_once_then_runs_the_command(tmp_path):
    defaults = _fake_defaults(tmp_path)
    comps = tmp_path / "components"
    env = {"WASMGATE_COMPONENTS": str(comps), "WASMGATE_DEFAULT_COMPONENTS": str(defaults)}
    r = _entrypoint(env, "sh", "-c", "echo ran $0", "cmd")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ran cmd\n"
    assert (comps / "guards" / "guard.wasm").read_bytes() == b"\0asm guard"
    assert (comps / "agents" / "agent.wasm").read_bytes() == b"\0asm agent"
    assert (comps / ".defaults-installed").exists()
    assert not list(comps.glob("*/.*.tmp"))
    # A guard the operator removed stays removed; one they replaced stays theirs.
    (comps / "guards" / "guard.wasm").unlink()
    (comps / "agents" / "agent.wasm").write_bytes(b"mine")
    r = _entrypoint(env, "true")
    assert r.returncode == 0, r.stderr
    assert not (comps / "guards" / "guard.wasm").exists()
    assert (comps / "agents" / "agent.wasm").read_bytes() == b"mine"


def test_entrypoint_keeps_existing_files_and_fails_clearly_when_it_cannot_write(tmp_path):
    defaults = _fake_defaults(tmp_path)
    comps = tmp_path / "components"
    (comps / "guards").mkdir(parents=True)
    (comps / "guards" / "guard.wasm").write_bytes(b"theirs")
    env = {"WASMGATE_COMPONENTS": str(comps), "WASMGATE_DEFAULT_COMPONENTS": str(defaults)}
    assert _entrypoint(env, "true").returncode == 0
    assert (comps / "guards" / "guard.wasm").read_bytes() == b"theirs"
    # A components path that cannot be created (as a bind mount owned by another user).
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _entrypoint({"WASMGATE_COMPONENTS": str(blocker / "components"),
                     "WASMGATE_DEFAULT_COMPONENTS": str(defaults)}, "true")
    assert r.returncode == 1
    assert "WASMGATE_UID" in r.stderr


# ---------------------------------------------------------------------------------------------
# Prometheus config and alert rules


def test_promtool_checks_the_config_and_rules():
    r = run(["promtool", "check", "config", str(PROMETHEUS_YML)])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(["promtool", "check", "rules", str(ALERTS_YML)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_rules_unit_tests_pass():
    r = subprocess.run(["promtool", "test", "rules", "alerts.test.yml"], capture_output=True,
                       text=True, cwd=Path(__file__).parent, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_for_a_severity_and_a_description():
    rules = [r for g in load_yaml(ALERTS_YML)["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert REQUIRED_ALERTS <= set(names), REQUIRED_ALERTS - set(names)
    for r in rules:
        assert "for" in r, r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"].get("summary") and r["annotations"].get("description"), r["alert"]
    tested = set(re.findall(r"alertname:\s*(\w+)", (Path(__file__).parent / "alerts.test.yml").read_text()))
    assert set(names) <= tested, f"alerts without a promtool unit test: {set(names) - tested}"


# ---------------------------------------------------------------------------------------------
# Dashboards (structure; the queries are run against Prometheus in test_dashboards.py)


def test_dashboards_are_well_formed():
    assert {p.name for p in DASHBOARDS} == {"wasmgate-overview.json", "wasmgate-components.json"}
    uids = set()
    for path in DASHBOARDS:
        d = load_dashboard(path)
        assert d["uid"] not in uids and len(d["uid"]) <= 40
        uids.add(d["uid"])
        defined = {v["name"] for v in d["templating"]["list"]}
        for v in d["templating"]["list"]:
            assert v["type"] == "query" and v["datasource"]["uid"] == "prometheus"
            assert re.fullmatch(r"label_values\(\s*[\w:]+\s*,\s*\w+\s*\)", v["definition"]), v
            assert v["query"]["query"] == v["definition"], v["name"]
        ids, titles = set(), set()
        for row, panel in panels_of(d):
            where = f"{path.name}: {panel.get('title')!r}"
            assert panel["id"] not in ids, where
            ids.add(panel["id"])
            assert panel["title"] and panel["title"] not in titles, where
            titles.add(panel["title"])
            assert panel.get("description"), f"{where} has no description"
            g = panel["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, where
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
            assert panel["targets"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            for t in panel["targets"]:
                unknown = variables_in(t["expr"]) - defined - BUILTIN_VARS
                assert not unknown, f"{where} uses undefined variables {unknown}"
            # Multi-value variables need a regex matcher.
            for v in d["templating"]["list"]:
                if v.get("multi"):
                    for t in panel["targets"]:
                        assert not re.search(rf'[^=!~]=\s*"\$\{{?{v["name"]}\b', t["expr"]), \
                            f"{where}: multi-value ${v['name']} needs =~"
