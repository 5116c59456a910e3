"""Intuit rotates refresh tokens and the old one dies at once: a rotated token must survive a
token store that cannot be written (a full disk)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import List

import pytest
from conftest import RANGE_END, RANGE_START

import qbo_rs
from qbo_rs.testing import QboEmulator


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KiB filesystem of its own (tmpfs): filling it affects nothing else."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI=true but a tmpfs cannot be mounted (root is needed): this test must run in CI")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield tiny
    finally:
        subprocess.run(["umount", "-l", str(tiny)], check=False)


def fill(disk: Path, name: str) -> None:
    fd = os.open(disk / name, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 1024):
            pass
    except OSError:  # ENOSPC: the disk is full
        pass
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (disk / "one-more").write_bytes(b"\0" * 4096)


def test_a_rotated_refresh_token_survives_a_full_disk(tiny_disk: Path, tmp_path: Path) -> None:
    store = tiny_disk / "tokens.json"
    with QboEmulator(seed=6, invoices=30, customers=5, items=20) as emu:
        emu.set_knobs(refresh_rotate_after_secs=0, old_refresh_grace_secs=0)  # rotate on every refresh
        rotated: List[str] = []
        options = dict(
            token_store=store,
            limiter_dir=None,
            requests_per_minute=100_000,
            backoff_base=0.01,
            on_token_rotated=lambda realm, token: rotated.append(token),
        )
        client = qbo_rs.QboClient(emu.credentials(), **options)
        assert client.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path / "d").ok
        assert len(rotated) == 1 and json.loads(store.read_text())["refresh_token"] == rotated[-1]
        assert (tiny_disk / "tokens.json.reserve").stat().st_size == 8192, "room for the next token is set aside"

        fill(tiny_disk, "filler")
        emu.expire_access_tokens()  # the next request refreshes, and Intuit rotates again
        assert client.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path / "d").ok
        assert len(rotated) == 2, "the hook got the new token"
        assert json.loads(store.read_text())["refresh_token"] == rotated[-1], "saved despite the full disk"

        # Saving shrank the reserved file and replaced the old store, so the room for the next
        # token was set aside again. Fill the disk once more: with no room for the next token,
        # the next refresh refuses to spend the current one, which stays valid in the store.
        (tiny_disk / "tokens.json.reserve").unlink()
        fill(tiny_disk, "filler-2")
        emu.expire_access_tokens()
        refused = client.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path / "d", raise_on_failure=False)
        assert not refused.ok and "no room to save a rotated refresh token" in (refused.windows[0].error or "")
        assert len(rotated) == 2 and json.loads(store.read_text())["refresh_token"] == rotated[-1]

        (tiny_disk / "filler").unlink()
        (tiny_disk / "filler-2").unlink()
        fresh = qbo_rs.QboClient(emu.credentials(), **options)  # from the store: the configured token died long ago
        assert fresh.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path / "d").ok
        assert json.loads(store.read_text())["refresh_token"] == rotated[-1] and len(rotated) == 3
