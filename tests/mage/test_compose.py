"""docker-compose.yaml through a real compose parser (Debian's docker-compose 1.29 needs no engine),
and the Dockerfile's inputs, so neither rots unnoticed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, mage_python

COMPOSE = shutil.which("docker-compose")


def compose_config(env_file: Path, extra_env=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "PGADMIN_", "DEFAULT_OWNER", "QBO_"))}
    env.update(extra_env or {})
    return subprocess.run(
        [COMPOSE, "--env-file", str(env_file), "config"],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def compose():
    if COMPOSE is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI=true and docker-compose is missing: apt-get install docker-compose")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    return COMPOSE


def test_compose_file_is_valid_and_wired_as_documented(compose, tmp_path: Path):
    p = compose_config(REPO / ".env.example")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "config.yaml"
    out.write_text(p.stdout)
    cfg = mage_python(f"import json, yaml; print(json.dumps(yaml.safe_load(open({str(out)!r}))))")
    services = cfg["services"]
    assert set(services) == {"mage", "postgres", "pgadmin"}
    assert set(cfg["volumes"]) == {"pgdata", "mage_data", "pgadmin"}
    pg, mage, pgadmin = services["postgres"], services["mage"], services["pgadmin"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in pg["volumes"])
    assert mage["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mage["build"]["dockerfile"] == "docker/Dockerfile"
    assert mage["environment"]["POSTGRES_HOST"] == "postgres"
    assert mage["environment"]["MAGE_DATA_DIR"] == "/home/src/mage_data"
    assert any(v.startswith("mage_data:/home/src/mage_data") for v in mage["volumes"])
    assert any(p_.startswith("127.0.0.1:6789:6789") for p_ in mage["ports"])
    assert any(p_.startswith("127.0.0.1:8085:80") for p_ in pgadmin["ports"])


def test_env_example_holds_no_secret_and_a_missing_password_is_refused(compose, tmp_path: Path):
    values = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for key in ("POSTGRES_PASSWORD", "PGADMIN_DEFAULT_PASSWORD", "DEFAULT_OWNER_PASSWORD"):
        assert values[key] == "change-me"
    for key in ("QBO_CLIENT_ID", "QBO_CLIENT_SECRET", "QBO_REFRESH_TOKEN", "QBO_REALM_ID"):
        assert values[key] == ""
    broken = tmp_path / "broken.env"
    broken.write_text("\n".join(f"{k}={v}" for k, v in values.items() if k != "POSTGRES_PASSWORD") + "\n")
    p = compose_config(broken)
    assert p.returncode != 0 and "set POSTGRES_PASSWORD in .env" in p.stderr


def test_dockerfile_is_multi_stage_and_its_inputs_exist_and_pass_the_dockerignore():
    text = (REPO / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert [s[1] for s in stages] == ["wheel", "mage"]
    assert "mageai/mageai:${MAGE_VERSION}" in stages[1][0] and "ARG MAGE_VERSION=0.9.80" in text
    assert "COPY --from=wheel" in text
    ignore = [
        line.strip()
        for line in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} is missing"
            assert any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed), (
                f"COPY source {src} is excluded by docker/Dockerfile.dockerignore"
            )
