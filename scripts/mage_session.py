"""What the headless Mage scripts beside this file share: the --project option of their command
line and the way they point Mage at a project and open its database.

Not a script of its own: mage_run_pipeline.py, mage_scheduler.py, mage_secrets.py and
mage_triggers.py import it (their folder is first on sys.path when they run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser that shows the script's docstring as its help, with the --project option
    (default <repo>/mage_project) that every script takes."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc
    )
    p.add_argument("--project", default=os.path.join(REPO, "mage_project"))
    return p


def open_project(project_path: str, with_db: bool = True) -> None:
    """Points Mage at the project and at MAGE_DATA_DIR (default <repo>/mage_data, made absolute),
    then, with_db, opens the project's database and brings its schema up to date. Mage prints
    import-time noise on stdout: it goes to stderr, stdout stays the scripts' own."""
    os.environ.setdefault("MAGE_DATA_DIR", os.path.join(REPO, "mage_data"))
    os.environ["MAGE_DATA_DIR"] = os.path.abspath(os.environ["MAGE_DATA_DIR"])
    with contextlib.redirect_stdout(sys.stderr):
        # Before anything imports mage_ai.orchestration.db: the sqlite URL is computed at import.
        from mage_ai.settings.repo import set_repo_path

        set_repo_path(project_path)
        if with_db:
            from mage_ai.orchestration.db import db_connection
            from mage_ai.orchestration.db.database_manager import database_manager

            db_connection.start_session()
            database_manager.run_migrations(log_level="WARNING")
