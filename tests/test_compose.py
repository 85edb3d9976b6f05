"""docker-compose.yml: valid against the Compose Specification schema (and `docker-compose config` where
installed), the distributed-sweep stack's services, healthchecks, ordering, loopback ports, no secrets."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["servers"]

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
GPU_OVERRIDE = REPO / "docker" / "compose.gpu.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA = Path(__file__).resolve().parent / "fixtures" / "compose-spec.json"

SERVICES = {"postgres", "minio", "minio-init", "mlflow", "study-init", "worker", "optuna-dashboard"}
# Compose interpolation: $$ is a literal $, else ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, $NAME.
VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
                      r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def _strings(node) -> list[str]:
    """Every string in a loaded YAML document: keys and values."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in _strings(key) + _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _variables(text: str) -> set[str]:
    return {m["braced"] or m["bare"] for m in VARIABLE.finditer(text) if m["braced"] or m["bare"]}


def _interpolate(node, env: dict[str, str]):
    def replace(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m["braced"] or m["bare"], m["op"], m["arg"] or ""
        value = env.get(name)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        return value or ""

    if isinstance(node, str):
        return VARIABLE.sub(replace, node)
    if isinstance(node, dict):
        return {_interpolate(k, env): _interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    return node


def _env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            env[key.strip()] = value.strip()
    return env


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """The file as `docker compose` sees it with `.env.example` as `.env`."""
    return _interpolate(raw, _env_example())


def _published(service: dict) -> list[tuple[str, str]]:
    """(host_ip, host_port) of each published port, short or long syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), str(port.get("published", ""))))
        else:
            parts = str(port).split(":")
            out.append((parts[0], parts[1]) if len(parts) == 3 else ("", parts[0] if len(parts) == 2 else ""))
    return out


def test_valid_against_the_compose_spec_schema(raw, compose):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    override = yaml.safe_load(GPU_OVERRIDE.read_text())
    for name, document in [("raw", raw), ("interpolated", compose), ("gpu override", override)]:
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    # The validator does catch mistakes: a misspelt condition and an unknown service key.
    broken = _interpolate(raw, _env_example())
    broken["services"]["worker"]["depends_on"]["mlflow"]["condition"] = "service_health"
    broken["services"]["worker"]["container"] = "w"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_docker_compose_config_accepts_it(tmp_path):
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                   capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}  # .env.example alone decides
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(GPU_OVERRIDE)]):
        result = subprocess.run([*command, "--env-file", str(ENV_EXAMPLE), "--project-directory", str(REPO),
                                 *files, "config", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr


def test_stack_services_healthchecks_and_ordering(compose):
    services = compose["services"]
    assert SERVICES <= set(services)
    for name in ("postgres", "minio", "mlflow"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert "container_name" not in services["worker"]  # `--scale worker=N` needs generated names

    def conditions(name: str) -> dict[str, str]:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        return {dep: spec["condition"] for dep, spec in depends_on.items()}

    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert conditions("mlflow") == {"postgres": "service_healthy", "minio-init": "service_completed_successfully"}
    assert conditions("study-init") == {"postgres": "service_healthy", "mlflow": "service_healthy"}
    assert conditions("worker") == {"study-init": "service_completed_successfully", "mlflow": "service_healthy"}
    assert conditions("optuna-dashboard") == {"study-init": "service_completed_successfully"}
    for name in ("minio-init", "study-init"):
        assert services[name]["restart"] == "no", name  # one-shot


def test_commands_use_postgres_and_the_tracking_server(compose):
    services = compose["services"]
    env = _env_example()
    optuna_url = f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['OPTUNA_DB']}"
    worker = services["worker"]["command"]
    assert worker[:2] == ["betasweep", "worker"]
    assert {f"--study={env['STUDY_NAME']}", f"--storage={optuna_url}", "--tracking-uri=http://mlflow:5000"} <= set(worker)
    assert services["study-init"]["command"] == ["betasweep", "study", "create", f"/examples/{env['STUDY_SPEC']}",
                                                 f"--storage={optuna_url}", "--tracking-uri=http://mlflow:5000",
                                                 "--exist-ok"]
    # The commands' options are the real CLI's, and the spec they name exists with the study name workers join.
    _assert_cli_accepts(worker)
    _assert_cli_accepts(services["study-init"]["command"])
    spec = yaml.safe_load((REPO / "examples" / env["STUDY_SPEC"]).read_text())
    assert spec["study"] == env["STUDY_NAME"]
    assert services["optuna-dashboard"]["command"][:2] == ["optuna-dashboard", optuna_url]

    mlflow = services["mlflow"]["command"]
    assert mlflow[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in mlflow
    assert f"--artifacts-destination=s3://{env['MLFLOW_BUCKET']}/" in mlflow
    assert (f"--backend-store-uri=postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{env['MLFLOW_DB']}") in mlflow
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # MLflow 3's host check must let workers in by the service name.
    assert "mlflow:5000" in services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert env["OPTUNA_DB"] != env["MLFLOW_DB"]


def _assert_cli_accepts(command: list[str]) -> None:
    """Every ``--option`` of a compose ``betasweep ...`` command is an option of that real click command."""
    from betasweep.cli import cli

    group, words = cli, command[1:]
    while words and words[0] in getattr(group, "commands", {}):
        group, words = group.commands[words[0]], words[1:]
    known = {opt for param in group.params for opt in (*param.opts, *param.secondary_opts)}
    given = {word.split("=", 1)[0] for word in words if word.startswith("--")}
    assert given <= known, f"{command[:3]}: unknown options {sorted(given - known)}"


def test_ports_are_published_on_loopback_only(raw, compose):
    published = {name: _published(service) for name, service in compose["services"].items()}
    assert {"postgres", "mlflow", "optuna-dashboard"} <= {name for name, ports in published.items() if ports}
    for name, ports in published.items():
        for host_ip, _ in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'all interfaces'}"
    # Without any .env at all the defaults are loopback too.
    for name, service in _interpolate(raw, {})["services"].items():
        for host_ip, _ in _published(service):
            assert host_ip == "127.0.0.1", name


def test_no_secret_in_the_file_and_env_example_defines_every_variable(raw):
    text = COMPOSE.read_text()
    env = _env_example()
    used = set().union(*(_variables(s) for s in _strings(raw)))
    assert not used - set(env), f"not in .env.example: {sorted(used - set(env))}"
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert secret in used
        assert env[secret].startswith("change-me") and env[secret] not in text
    for s in _strings(raw):  # credentials in URLs are variables
        for user, password in re.findall(r"://([^:/@\s]+):([^@/\s]+)@", s):
            assert VARIABLE.fullmatch(user) and VARIABLE.fullmatch(password), s
    for service in raw["services"].values():
        environment = service.get("environment", {})
        assert isinstance(environment, dict)
        for key, value in environment.items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY", key):
                assert VARIABLE.fullmatch(str(value)), f"{key} is a literal"
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_dockerfile_cpu_by_default_cuda_by_build_arg_non_root():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim", dockerfile, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", dockerfile, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile, re.M)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in dockerfile
    assert '".[postgres]"' in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")


def test_postgres_init_script_creates_both_databases_idempotently(postgres_server):
    env = {**os.environ, "PATH": f"{postgres_server.bin}:{os.environ['PATH']}", "POSTGRES_USER": postgres_server.user,
           "PGPASSWORD": postgres_server.password, "PGHOST": "127.0.0.1", "PGPORT": str(postgres_server.port),
           "OPTUNA_DB": "compose_optuna", "MLFLOW_DB": "compose_mlflow"}
    for _ in range(2):
        result = subprocess.run(["sh", str(REPO / "docker" / "postgres-init.sh")], env=env, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
    listing = subprocess.run([str(postgres_server.bin / "psql"), "-U", postgres_server.user, "-d", "postgres", "-Atc",
                              "SELECT datname FROM pg_database"], env=env, capture_output=True, text=True, check=True)
    assert {"compose_optuna", "compose_mlflow"} <= set(listing.stdout.split())
