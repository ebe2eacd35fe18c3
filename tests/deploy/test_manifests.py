"""The deployment files in deploy/ against the code they deploy.

Neither Docker, a Kubernetes cluster nor a PgBouncer runs in CI: these tests parse the
files and check what can drift from the code (the port, the health endpoints, the config
keys the server knows, stop timeouts long enough for the server's handover and the
worker's drain). What they cannot show is listed in docs/operations.md.
"""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from belfry.adapters.store.factory import driver_options, driver_url
from belfry.cli.commands_server import _CONFIG_KEYS
from belfry.server.defaults import DEFAULT_PORT
from belfry.worker.main import WorkerConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent

# What a server's stop takes at most: uvicorn's graceful shutdown (5 s, server/main.py),
# then the embedded worker's runs killed and reported (15 s, Agent.stop).
SERVER_STOP_SECONDS = 5 + 15
# A worker's: its drain grace, then its runs killed and reported (15 s, Agent.stop).
WORKER_STOP_SECONDS = WorkerConfig.drain_grace + 15


def _yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value.removesuffix("s"))


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the case
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def _port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


# -- systemd ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "command", "stop_seconds"),
    [
        ("belfry-server.service", "server", SERVER_STOP_SECONDS),
        ("belfry-worker.service", "worker", WORKER_STOP_SECONDS),
    ],
)
def test_systemd_units_stop_gracefully_and_restart(
    name: str, command: str, stop_seconds: float
) -> None:
    service = _unit(name)["Service"]
    assert service["User"] not in ("", "root")
    assert service["Restart"] == "on-failure"
    # SIGTERM to Belfry alone: it drains or hands over, and stops the jobs itself.
    assert service["KillMode"] == "mixed"
    assert _seconds(service["TimeoutStopSec"]) >= stop_seconds + 10
    assert service["EnvironmentFile"].startswith("/etc/belfry/")
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "belfry" and argv[1] == command


def test_the_worker_unit_keeps_what_jobs_need() -> None:
    # These would break jobs (sudo, writing under /etc or /home, run_as); see the unit.
    service = _unit("belfry-worker.service")["Service"]
    for option in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert option not in service, f"{option} breaks some jobs: document it, don't set it"
    assert "CapabilityBoundingSet" not in service  # run_as needs CAP_SETUID/SETGID/KILL


def test_the_server_unit_reads_the_example_config() -> None:
    argv = shlex.split(_unit("belfry-server.service")["Service"]["ExecStart"])
    assert argv[argv.index("--config") + 1] == "/etc/belfry/server.yaml"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_accepts_the_units(tmp_path: Path) -> None:
    # verify wants the binary and the environment file to exist: point at stand-ins.
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text().replace("/opt/belfry/bin/belfry", "/bin/true")
        (tmp_path / unit.name).write_text(text.replace("EnvironmentFile=/", "EnvironmentFile=-/"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(map(str, tmp_path.iterdir()))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


# -- the HA example --------------------------------------------------------------------------
def test_the_ha_server_config_uses_only_known_keys() -> None:
    config = _yaml(DEPLOY / "ha" / "server.yaml")
    assert set(config) <= _CONFIG_KEYS, set(config) - _CONFIG_KEYS
    assert _port(config["listen"]) == DEFAULT_PORT
    assert config["worker"] is False
    url, _ = driver_options(driver_url(config["db"]))
    assert url.get_backend_name() == "postgresql" and url.password is None


def test_the_ha_example_workers_list_every_server() -> None:
    lines = (DEPLOY / "ha" / "worker.env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(values) == {"BELFRY_TOKEN", "BELFRY_SERVER"}
    servers = values["BELFRY_SERVER"].split(",")
    assert len(servers) == 3 and all(_port(url) == DEFAULT_PORT for url in servers)


def test_pgbouncer_example_is_transaction_pooling_with_the_url_option() -> None:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string((DEPLOY / "ha" / "pgbouncer.ini").read_text())
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    # The option the notes tell users to add is one the store accepts.
    _, options = driver_options(
        driver_url("postgresql://belfry@pgbouncer:6432/belfry?prepare_threshold=none")
    )
    assert options == {"prepare_threshold": None}


# -- Docker ----------------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), as (INSTRUCTION, rest)."""
    joined = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_dockerfile_matches_the_code() -> None:
    instructions = _dockerfile()
    final = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    stage = instructions[final:]
    assert stage[0] == ("FROM", "python:3.11-slim")
    values = dict(stage)  # the last of each
    assert values["EXPOSE"] == str(DEFAULT_PORT)
    assert values["USER"] not in ("root", "0")
    entrypoint, command = _json_list(values["ENTRYPOINT"]), _json_list(values["CMD"])
    assert entrypoint[-1] == "belfry" and command[0] == "server"
    assert _port(command[command.index("--listen") + 1]) == DEFAULT_PORT
    assert "/healthz" in values["HEALTHCHECK"] and str(DEFAULT_PORT) in values["HEALTHCHECK"]


def _json_list(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list)
    return [str(item) for item in value]


def test_the_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = {"src", "pyproject.toml", "README.md"}
    assert not ignored & copied
    assert {".git", ".venv"} <= ignored


# -- Kubernetes ------------------------------------------------------------------------------
def _manifests() -> dict[tuple[str, str], Any]:
    documents = YAML(typ="safe").load_all((DEPLOY / "kubernetes" / "belfry.yaml").read_text())
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


def _container(deployment: Any) -> Any:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_the_server_deployment_has_three_replicas_and_the_right_probes() -> None:
    manifests = _manifests()
    server = manifests[("Deployment", "belfry-server")]
    assert server["spec"]["replicas"] == 3
    pod = server["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= SERVER_STOP_SECONDS + 10
    container = _container(server)
    (port,) = container["ports"]
    assert port["containerPort"] == DEFAULT_PORT
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    # Liveness must not follow the database: an outage would restart every replica.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    service = manifests[("Service", "belfry")]
    (exposed,) = service["spec"]["ports"]
    assert exposed["port"] == DEFAULT_PORT and exposed["targetPort"] == port["name"]
    assert service["spec"]["selector"] == server["spec"]["selector"]["matchLabels"]


def test_the_server_pods_get_their_config_and_secrets() -> None:
    manifests = _manifests()
    server = manifests[("Deployment", "belfry-server")]
    container = _container(server)
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    assert args[args.index("--db") + 1] == "$(BELFRY_DATABASE_URL)"
    (database_env,) = [e for e in container["env"] if e["name"] == "BELFRY_DATABASE_URL"]
    assert database_env["valueFrom"]["secretKeyRef"] == {
        "name": "belfry-server",
        "key": "database-url",
    }
    config = _yaml_text(manifests[("ConfigMap", "belfry-server")]["data"]["server.yaml"])
    assert set(config) <= _CONFIG_KEYS and config["worker"] is False
    assert _port(config["listen"]) == DEFAULT_PORT
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["config"]["mountPath"] == config_path
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    secret_volume = volumes["secret"]["secret"]
    assert secret_volume["secretName"] == "belfry-server"
    (item,) = secret_volume["items"]
    assert config["secret_key_file"] == f"{mounts['secret']['mountPath']}/{item['path']}"
    assert item["key"] in manifests[("Secret", "belfry-server")]["stringData"]


def _yaml_text(text: str) -> Any:
    return YAML(typ="safe").load(text)


def test_the_workers_drain_within_their_grace_and_reach_the_service() -> None:
    manifests = _manifests()
    worker = manifests[("Deployment", "belfry-worker")]
    pod = worker["spec"]["template"]["spec"]
    args = _container(worker)["args"]
    drain = float(args[args.index("--drain-grace") + 1])
    assert pod["terminationGracePeriodSeconds"] >= drain + 15 + 10
    server_url = args[args.index("--server") + 1]
    assert server_url == f"http://belfry:{DEFAULT_PORT}"  # the Service above
    (token,) = [e for e in _container(worker)["env"] if e["name"] == "BELFRY_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"]["name"] == "belfry-worker"
    assert ("Secret", "belfry-worker") in manifests
