"""What `qbo-rs backfill` shows while it runs: on a terminal a bar of records committed and requests
against the plan's estimate; off a terminal nothing but log lines. Interrupted (SIGINT, Ctrl-C), it
says exactly how many rows it committed: the lines the file holds."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

from conftest import QBO, backfill_args, cli_env, read_raw

from qbo_rs.testing import QboEmulator

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FRAME = re.compile(
    r"(?P<committed>[\d,]+)/(?P<total>[\d,]+) records committed, (?P<fetched>[\d,]+) fetched, "
    r"(?P<requests>\d+)/~(?P<estimated>\d+) requests"
)


def number(text: str) -> int:
    return int(text.replace(",", ""))


class Terminal:
    """Runs the CLI with its stderr on a pseudo-terminal 250 columns wide and keeps what it draws."""

    def __init__(self, args: List[str], env: Dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self.proc = subprocess.Popen(
            QBO + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
        )
        os.close(slave)
        self._master = master
        self._chunks: List[bytes] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            self._chunks.append(data)

    def finish(self) -> Tuple[int, str]:
        """Waits for the CLI to exit; returns its exit code and what it drew, escapes removed."""
        code = self.proc.wait(timeout=180)
        self._reader.join(timeout=30)
        os.close(self._master)
        return code, ESCAPES.sub("", b"".join(self._chunks).decode("utf-8", "replace"))


def last_frame(screen: str) -> Dict[str, int]:
    frames = [m.groupdict() for m in FRAME.finditer(screen)]
    assert frames, f"no progress bar was drawn:\n{screen[-2000:]}"
    return {k: number(v) for k, v in frames[-1].items()}


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for_committed_lines(path: Path, proc: subprocess.Popen) -> None:
    """Returns once the run has committed its first lines (it is then mid-run)."""
    while lines_in(path) == 0:
        assert proc.poll() is None, "the backfill ended before committing anything"
        time.sleep(0.01)


def invoice_args(data: Path, page_size: int) -> List[str]:
    return backfill_args(
        "invoice", "--page-size", str(page_size), "--requests-per-minute", "600000", "--data-dir", str(data)
    )


def env_for(emu: QboEmulator, tmp_path: Path) -> Dict[str, str]:
    return cli_env(emu, tmp_path, TERM="xterm-256color")


def test_the_bar_shows_records_committed_and_requests_against_the_estimate(tmp_path: Path):
    with QboEmulator(seed=3, invoices=3000, customers=5, items=5, throttle_per_minute=0, max_in_flight=0) as emu:
        terminal = Terminal(invoice_args(tmp_path / "d", 100), env_for(emu, tmp_path))
        code, screen = terminal.finish()
    assert code == 0, screen[-3000:]
    summary = re.search(
        r"invoices 3000 row\(s\) in \d+ window\(s\) \(3000 committed\), [\d.]+ s, (\d+) request", screen
    )
    assert summary, screen[-3000:]
    estimated = re.search(r"estimated (\d+)", screen)
    assert estimated, screen[-3000:]
    frame = last_frame(screen)
    assert frame["committed"] == frame["total"] == frame["fetched"] == 3000
    assert frame["committed"] == len(read_raw(tmp_path / "d" / "invoices.txt"))
    assert frame["requests"] == int(summary.group(1))
    assert frame["estimated"] == int(estimated.group(1))


def slow_emulator() -> QboEmulator:
    # 12,000 invoices in pages of 50 at 50 ms a request: seconds of paging, so the run is
    # mid-way when its first lines are committed and the signal is sent.
    return QboEmulator(
        seed=4, invoices=12000, customers=5, items=5, latency_ms=50, throttle_per_minute=0, max_in_flight=0
    )


def test_an_interrupted_run_shows_and_says_exactly_what_it_committed(tmp_path: Path):
    data = tmp_path / "d"
    with slow_emulator() as emu:
        terminal = Terminal(invoice_args(data, 50), env_for(emu, tmp_path))
        wait_for_committed_lines(data / "invoices.txt", terminal.proc)
        terminal.proc.send_signal(signal.SIGINT)
        code, screen = terminal.finish()
    assert code == 130, screen[-3000:]
    said = re.search(r"interrupted: (\d+) row\(s\) committed in this run \((\d+) fetched\)", screen)
    assert said, screen[-3000:]
    committed = len(read_raw(data / "invoices.txt"))
    assert 0 < committed < 12000
    assert int(said.group(1)) == committed
    assert last_frame(screen)["committed"] == committed


def test_off_a_terminal_nothing_is_drawn_and_an_interrupt_says_what_it_committed(tmp_path: Path):
    data = tmp_path / "d"
    with slow_emulator() as emu:
        env = env_for(emu, tmp_path)
        proc = subprocess.Popen(
            QBO + invoice_args(data, 50), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        wait_for_committed_lines(data / "invoices.txt", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert "\r" not in err and "\x1b" not in err and "records committed," not in err, "a bar was drawn on a pipe"
    said = re.search(r"interrupted: (\d+) row\(s\) committed in this run", err)
    assert said, err[-3000:]
    assert int(said.group(1)) == len(read_raw(data / "invoices.txt"))
    assert "Validation: interrupted:" in err and "[ALERT]" not in err, err[-3000:]
