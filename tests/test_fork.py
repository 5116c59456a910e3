"""A process forked after the engine ran (multiprocessing's fork start method, Linux's default
before Python 3.14) works, instead of hanging forever on the parent's runtime threads."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path
from typing import Any, Dict

from conftest import RANGE_END, RANGE_START, landed_versions, read_raw, truth_versions

import qbo_rs
from qbo_rs.exceptions import ConfigError
from qbo_rs.testing import QboEmulator


def _child(client: Any, env: Dict[str, str], data: Path, result: Path) -> None:
    try:
        if client is None:
            client = qbo_rs.QboClient(qbo_rs.Credentials.from_env(env), token_store=None, limiter_dir=None)
        report = client.backfill("item", RANGE_START, RANGE_END, data_dir=data)
        try:
            asyncio.run(client.backfill_async("item", RANGE_START, RANGE_END, data_dir=data))
            refused = "async ran"
        except ConfigError as err:
            refused = str(err)
        result.write_text(f"{report.total_rows}\n{refused}")
    except BaseException as err:  # reported to the parent through the file
        result.write_text(f"error {type(err).__name__}: {err}")


def test_a_forked_child_backfills_with_a_new_or_an_inherited_client(tmp_path: Path) -> None:
    with QboEmulator(seed=1, invoices=50, customers=10, items=30) as emu:
        env = emu.env()
        parent = qbo_rs.QboClient(qbo_rs.Credentials.from_env(env), token_store=None, limiter_dir=None)
        assert parent.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path / "parent").ok
        fork = multiprocessing.get_context("fork")
        for name, client in (("new", None), ("inherited", parent)):
            result = tmp_path / f"{name}.txt"
            child = fork.Process(target=_child, args=(client, env, tmp_path / name, result))
            child.start()
            child.join(60)
            hung = child.is_alive()
            if hung:
                child.kill()
            assert not hung, f"the child with a {name} client hung"
            rows, refused = result.read_text().split("\n", 1)
            assert rows == "30", result.read_text()
            assert "forked" in refused and "sync API" in refused, refused
            assert landed_versions(read_raw(tmp_path / name / "items.txt")) == truth_versions(emu, "Item")
        # The parent goes on as before, async included.
        assert asyncio.run(parent.backfill_async("item", RANGE_START, RANGE_END, data_dir=tmp_path / "parent")).ok
