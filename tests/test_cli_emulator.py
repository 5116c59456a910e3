"""Two emulators that share a realm id (same seed) never share a cached access token: the token
store keys on the token endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import RANGE_END, RANGE_START

from qbo_rs.testing import QboEmulator

QBO = [sys.executable, "-m", "qbo_rs"]


def clean_env(home: Path) -> dict:
    """No QBO_* variables (each run brings what it needs) and no explicit token store: the
    default token store, under HOME, is what a user gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_") and k != "XDG_STATE_HOME"}
    env["HOME"] = str(home)
    env["QBO_LIMITER_DIR"] = os.environ["QBO_LIMITER_DIR"]
    # `qbo-rs` is the console script installed beside this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_two_emulators_with_one_realm_id_never_share_an_access_token(tmp_path: Path):
    env = clean_env(tmp_path)

    def backfill(emu: QboEmulator, n: int, **extra: str) -> None:
        out = subprocess.run(
            QBO
            + ["backfill", "item", "--start", RANGE_START, "--end", RANGE_END]
            + ["--data-dir", str(tmp_path / f"data{n}"), "--no-progress"],
            env=dict(env, **emu.env(), **extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "401" not in out.stderr, out.stderr

    with (
        QboEmulator(seed=5, invoices=5, customers=5, items=20) as a,
        QboEmulator(seed=5, invoices=5, customers=5, items=20) as b,
    ):
        assert a.realm_id == b.realm_id and a.base_url != b.base_url
        # The default token store: one file per token endpoint.
        for n, emu in enumerate([a, b, a]):
            backfill(emu, n)
        # Each endpoint keeps its own token: the third run reused the first one's access token.
        assert a.stats()["token_refreshes"] == 1 and b.stats()["token_refreshes"] == 1
        stores = sorted(p.name for p in (tmp_path / ".local" / "state" / "qbo_rs").glob("tokens-*.json"))
        assert len(stores) == 2 and all(s.startswith(f"tokens-{a.realm_id}-") for s in stores), stores
        # One file named by hand for both: the tokens it holds are used only by the endpoint that
        # issued them.
        shared = str(tmp_path / "shared.json")
        for n, emu in enumerate([a, b], start=3):
            backfill(emu, n, QBO_TOKEN_STORE=shared)
        for emu in (a, b):
            assert emu.stats()["unauthorized"] == 0
