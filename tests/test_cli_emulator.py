"""The paths a user takes with `qbo-rs emulator`: the README's recipe works as written in a shell,
and two emulators that share a realm id (same seed) never share a cached access token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import QBO, backfill_args, read_raw, run_cli

from qbo_rs.testing import QboEmulator

REPO = Path(__file__).resolve().parent.parent


def readme_recipe() -> str:
    """The README's emulator recipe: the shell block of "Command line" that starts the emulator."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    recipes = [b for b in blocks if "eval" in b and "qbo-rs emulator" in b]
    assert len(recipes) == 1, f"expected one emulator recipe in README.md, found {len(recipes)}"
    return recipes[0]


def clean_env(home: Path) -> dict:
    """No QBO_* variables (each run brings what it needs) and no explicit token store: the
    default token store, under HOME, is what a user gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBO_") and k != "XDG_STATE_HOME"}
    env["HOME"] = str(home)
    env["QBO_LIMITER_DIR"] = os.environ["QBO_LIMITER_DIR"]
    # `qbo-rs` is the console script installed beside this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def read_to_eof(proc: subprocess.Popen) -> str:
    """Everything `proc` writes to its standard output until it closes it (60 s at most, so a
    process that keeps it open fails the test instead of hanging it)."""
    chunks: list = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the emulator kept its standard output open"
    return chunks[0]


def test_the_readme_emulator_recipe_works_as_written(tmp_path: Path):
    recipe = readme_recipe()
    shell = subprocess.Popen(
        ["bash", "-c", recipe],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=120)
    finally:
        # Whatever happened, nothing the recipe started outlives the test.
        try:
            os.killpg(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert shell.returncode == 0, err
    assert "Total customers descargadas: 300" in err, err
    assert len(read_raw(tmp_path / "data" / "customers.txt")) == 300


def test_the_emulator_prints_lines_a_shell_can_eval_and_that_export(tmp_path: Path):
    # 0 means "no limit" for both throttles, as the help says (and as in QboEmulator).
    proc = subprocess.Popen(
        QBO + ["emulator", "--invoices", "30", "--throttle-per-minute", "0", "--max-in-flight", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once it listens it prints the lines and closes its standard output: a reader sees EOF
        # while it serves on (what lets `eval "$(qbo-rs emulator &)"` return).
        printed = read_to_eof(proc)
        assert proc.poll() is None, "the emulator serves on after printing"
        names = re.findall(r"^export (QBO_[A-Z_]+)=", printed, flags=re.M)
        assert names == [
            "QBO_BASE_URL",
            "QBO_TOKEN_URL",
            "QBO_CLIENT_ID",
            "QBO_CLIENT_SECRET",
            "QBO_REFRESH_TOKEN",
            "QBO_REALM_ID",
            "QBO_EMULATOR_PID",
        ], printed
        script = printed + 'env | grep "^QBO_" | sort\n'
        shown = subprocess.run(["bash", "-c", script], env=clean_env(tmp_path), capture_output=True, text=True)
        exported = dict(line.split("=", 1) for line in shown.stdout.splitlines())
        assert exported["QBO_EMULATOR_PID"] == str(proc.pid)
        env = dict(os.environ, **exported, QBO_TOKEN_STORE=str(tmp_path / "t.json"))
        out = run_cli(backfill_args("invoice", "--data-dir", str(tmp_path)), env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert len(read_raw(tmp_path / "invoices.txt")) == 30
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_two_emulators_with_one_realm_id_never_share_an_access_token(tmp_path: Path):
    env = clean_env(tmp_path)

    def backfill(emu: QboEmulator, n: int, **extra: str) -> None:
        args = backfill_args("item", "--data-dir", str(tmp_path / f"data{n}"), "--no-progress")
        out = run_cli(args, dict(env, **emu.env(), **extra), timeout=120)
        assert out.returncode == 0, out.stderr
        # The client's line for a rejected access token (a bare "401" can be a timestamp's digits).
        assert "answered 401" not in out.stderr and "invalid_grant" not in out.stderr, out.stderr

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
