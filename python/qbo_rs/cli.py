"""Entry point of the ``qbo-rs`` command (and ``python -m qbo_rs``); the CLI is Rust."""

from __future__ import annotations

import os
import platform
import signal
import sys
from typing import List, Optional

from qbo_rs import _qbo_rs

# glibc's mallopt parameter for the arena cap (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Caps glibc's malloc arenas for this process unless ``MALLOC_ARENA_MAX`` is set.

    glibc gives every thread that contends for the heap an arena of its own (up to 8 per core)
    and returns little of an arena's freed memory. A backfill's worker threads pass short-lived
    multi-megabyte page bodies and write batches between them, which fragments those arenas:
    peak RSS of ``qbo-rs backfill invoice`` grew from 87 MB at 200k invoices to 121–124 MB at 1M
    with glibc's default, and stayed at 74 MB at 1M with one arena. Only the command line does
    this, since it owns its process; in your own long-running process set ``MALLOC_ARENA_MAX=2``
    in the environment instead. Must run before the engine starts its threads. Returns whether
    the cap was set.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        import ctypes

        result: int = ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)
        return result == 1
    except (OSError, AttributeError):
        return False


def main(argv: Optional[List[str]] = None) -> int:
    # Let the Rust side own Ctrl-C/SIGTERM: it stops cleanly between requests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    limit_malloc_arenas()
    return _qbo_rs.run_cli(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
