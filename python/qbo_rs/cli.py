"""Entry point of the ``qbo-rs`` command (and ``python -m qbo_rs``); the CLI is Rust."""

from __future__ import annotations

import signal
import sys
from typing import List, Optional

from qbo_rs import _qbo_rs


def main(argv: Optional[List[str]] = None) -> int:
    # Let the Rust side own Ctrl-C/SIGTERM: it stops cleanly between requests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    return _qbo_rs.run_cli(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
