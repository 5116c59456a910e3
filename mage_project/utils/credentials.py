"""The QuickBooks client of a block: credentials from Mage Secrets (then the environment), the
rotated refresh token written back to its secret, and the realm's request budget shared by every
worker process."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from typing import Any, Dict, Iterator, Optional, Tuple

import qbo_rs
from mage_project.utils.logs import engine_logs, fail, log
from qbo_rs.exceptions import ConfigError

# (Mage secret, environment fallback).
QB_SECRETS = (
    ("qb_client_id", "QBO_CLIENT_ID"),
    ("qb_client_secret", "QBO_CLIENT_SECRET"),
    ("qb_refresh_token", "QBO_REFRESH_TOKEN"),
    ("qb_realm_id", "QBO_REALM_ID"),
)

# QuickBooks' limit per realm (Intuit: ~500 requests/min, 10 in flight); 490 leaves a margin.
REALM_REQUESTS_PER_MINUTE = 490
REALM_MAX_IN_FLIGHT = 10


# --------------------------------------------------------------------------------------------
# Credentials: Mage Secrets first, then the environment.
# --------------------------------------------------------------------------------------------


def mage_secret(name: str) -> Optional[str]:
    try:
        from mage_ai.data_preparation.shared.secrets import get_secret_value

        value = get_secret_value(name, suppress_warning=True)
    except Exception as err:  # no Mage DB session (plain `python`), unreadable key, ...
        logging.getLogger(__name__).warning(
            "Mage secret %s unavailable (%s); trying the environment", name, type(err).__name__
        )
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def read_credentials() -> Tuple[qbo_rs.Credentials, Dict[str, str]]:
    """Returns the credentials and, per secret, where it came from (never the value)."""
    values: Dict[str, str] = {}
    sources: Dict[str, str] = {}
    missing = []
    for secret, env in QB_SECRETS:
        value = mage_secret(secret)
        if value is not None:
            values[secret], sources[secret] = value, "mage_secret"
            continue
        value = os.environ.get(env, "").strip()
        if value:
            values[secret], sources[secret] = value, "env"
            continue
        missing.append(f"{secret} (Mage secret) or {env} (environment)")
    if missing:
        raise ConfigError(
            "missing QuickBooks credential(s): "
            + "; ".join(missing)
            + ". Set them with scripts/mage_secrets.py or in the Mage UI (Secrets)."
        )
    environment = os.environ.get("QBO_ENTORNO", "").strip().lower() or "sandbox"
    if environment not in ("sandbox", "production"):
        raise ConfigError(f"QBO_ENTORNO must be sandbox or production (got {environment!r})")
    creds = qbo_rs.Credentials(
        values["qb_client_id"],
        values["qb_client_secret"],
        values["qb_refresh_token"],
        values["qb_realm_id"],
        environment=environment,
        base_url=os.environ.get("QBO_BASE_URL", "").strip() or None,
        token_url=os.environ.get("QBO_TOKEN_URL", "").strip() or None,
    )
    return creds, sources


def _secrets_lock_path() -> str:
    from mage_ai.data_preparation.shared.secrets import get_secrets_dir
    from mage_ai.orchestration.constants import Entity

    directory = get_secrets_dir(Entity.GLOBAL)
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, ".qbo_rs-upsert.lock")


def upsert_mage_secret(name: str, value: str) -> None:
    """Create or replace a Mage secret (Mage has no update: delete + create, serialised across
    processes by a file lock because parallel workers may rotate at the same moment)."""
    from mage_ai.data_preparation.repo_manager import get_project_uuid
    from mage_ai.data_preparation.shared.secrets import create_secret, delete_secret, get_secret_value

    with open(_secrets_lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # mage 0.9.80: delete_secret crashes on a missing name, create_secret on an existing one.
            if get_secret_value(name, suppress_warning=True) is not None:
                delete_secret(name)
            create_secret(name, value, project_uuid=get_project_uuid())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class TokenRotationRecorder:
    """``on_token_rotated`` hook. The engine calls it from a worker thread; the Mage DB session is
    per thread, so the new token is only kept here and written by :meth:`flush` on the block's
    thread. The engine's token store (0600, locked) holds it meanwhile, so nothing is lost."""

    def __init__(self) -> None:
        self.latest: Optional[str] = None
        self.count = 0

    def __call__(self, realm_id: str, refresh_token: str) -> None:
        self.latest = refresh_token
        self.count += 1

    def flush(self, kwargs: Dict[str, Any], source: str) -> None:
        if self.latest is None:
            return
        if source != "mage_secret":
            log(
                kwargs,
                "Intuit rotated the refresh token; it came from QBO_REFRESH_TOKEN, which cannot be "
                "updated from here: the token store keeps the new one. Move it into the "
                "qb_refresh_token Mage secret (scripts/mage_secrets.py) to keep both in step.",
                "warning",
            )
            return
        try:
            upsert_mage_secret("qb_refresh_token", self.latest)
            log(kwargs, "Intuit rotated the refresh token: Mage secret qb_refresh_token updated")
        except Exception as err:
            log(
                kwargs,
                f"Intuit rotated the refresh token but writing the Mage secret qb_refresh_token "
                f"failed ({type(err).__name__}); the token store still holds it",
                "error",
            )
        finally:
            self.latest = None


def token_store_path(realm_id: str) -> str:
    """$QBO_TOKEN_STORE, else beside Mage's secrets key in $MAGE_DATA_DIR (one file shared by
    every worker process on the machine, so they spend each refresh token once)."""
    explicit = os.environ.get("QBO_TOKEN_STORE", "").strip()
    if explicit:
        return explicit
    from mage_ai.settings.repo import get_data_dir

    directory = os.path.join(os.path.abspath(os.path.expanduser(get_data_dir())), "qbo_rs")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, f"tokens-{realm_id}.json")


# --------------------------------------------------------------------------------------------
# The realm's budget, shared by every worker process on the machine.
# --------------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 (got {value})")
    return value


def realm_budget() -> Tuple[int, int]:
    """(requests_per_minute, max_in_flight) for the whole realm.

    Mage's scheduler may run pipeline runs in parallel processes (``queue_config.concurrency``); qbo_rs
    shares one budget file per realm between every process on the machine
    (:func:`qbo_rs.default_limiter_dir`, or ``$QBO_LIMITER_DIR``), so each worker asks for the
    realm's whole budget and together they never exceed it. QBO_RS_REALM_RPM /
    QBO_RS_REALM_MAX_IN_FLIGHT lower it (another tool uses the same company)."""
    return (
        _env_int("QBO_RS_REALM_RPM", REALM_REQUESTS_PER_MINUTE),
        _env_int("QBO_RS_REALM_MAX_IN_FLIGHT", REALM_MAX_IN_FLIGHT),
    )


def make_client(kwargs: Dict[str, Any]) -> Tuple[qbo_rs.QboClient, Dict[str, str], TokenRotationRecorder]:
    creds, sources = read_credentials()
    rpm, in_flight = realm_budget()
    recorder = TokenRotationRecorder()
    client = qbo_rs.QboClient(
        creds,
        requests_per_minute=rpm,
        max_in_flight=in_flight,
        backoff_base=float(os.environ.get("QBO_RS_BACKOFF_BASE", "1.0") or 1.0),
        token_store=token_store_path(creds.realm_id),
        on_token_rotated=recorder,
    )
    shared = client.budget_file
    log(
        kwargs,
        f"realm {creds.realm_id} ({creds.environment}): {rpm} requests/min and {in_flight} in flight "
        + (
            f"shared by every worker process through {shared}"
            if shared is not None
            else "for this process ALONE: the shared budget directory is unusable (see the warning above)"
        )
        + "; credentials from "
        + ", ".join(f"{k}={v}" for k, v in sorted(sources.items())),
    )
    return client, sources, recorder


@contextlib.contextmanager
def engine_client(kwargs: Dict[str, Any]) -> Iterator[qbo_rs.QboClient]:
    """The block's QuickBooks client, with the engine's log lines in the block's log. A missing
    secret fails here, as one ERROR line naming it; a refresh token Intuit rotates meanwhile is
    written back to its Mage secret when the block's work ends, failed or not."""
    with engine_logs(kwargs):
        try:
            client, sources, rotation = make_client(kwargs)
        except ConfigError as err:
            raise fail(kwargs, ConfigError(str(err))) from None
        try:
            yield client
        finally:
            rotation.flush(kwargs, sources["qb_refresh_token"])
