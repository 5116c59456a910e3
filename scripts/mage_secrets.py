#!/usr/bin/env python
"""Manage the project's Mage Secrets without the UI (the UI's own create/delete functions).

Usage (MAGE_DATA_DIR must be the value Mage runs with; default <repo>/mage_data):
  scripts/mage_secrets.py set NAME            # value read from stdin (keeps it out of ps/history)
  scripts/mage_secrets.py set NAME VALUE
  scripts/mage_secrets.py from-env            # qb_client_id <- QBO_CLIENT_ID, ... (the four qb_* secrets)
  scripts/mage_secrets.py get NAME [--reveal] # without --reveal: only whether it is set, and its length
  scripts/mage_secrets.py list
  scripts/mage_secrets.py delete NAME
Options: --project PATH (default <repo>/mage_project).

Where Mage 0.9.80 keeps them: the Fernet-encrypted value in table `secret` of the project DB
($MAGE_DATA_DIR/<project folder>/mage-ai.db with the default sqlite), the key in
$MAGE_DATA_DIR/secrets/key. Back both up together: without the key the values are unreadable;
another MAGE_DATA_DIR sees none of them. Exit codes: 0 ok, 1 not found, 2 usage.
"""

from __future__ import annotations

import contextlib
import os
import sys

from mage_session import argument_parser, open_project

QB_SECRETS = (
    ("qb_client_id", "QBO_CLIENT_ID"),
    ("qb_client_secret", "QBO_CLIENT_SECRET"),
    ("qb_refresh_token", "QBO_REFRESH_TOKEN"),
    ("qb_realm_id", "QBO_REALM_ID"),
)


def main(argv=None) -> int:
    p = argument_parser(__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("set")
    s.add_argument("name")
    s.add_argument("value", nargs="?", default="-")
    sub.add_parser("from-env")
    g = sub.add_parser("get")
    g.add_argument("name")
    g.add_argument("--reveal", action="store_true")
    sub.add_parser("list")
    d = sub.add_parser("delete")
    d.add_argument("name")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    project_path = os.path.abspath(args.project)
    if not os.path.exists(os.path.join(project_path, "metadata.yaml")):
        print(f"error: {project_path} is not a Mage project", file=sys.stderr)
        return 2
    open_project(project_path)
    # Mage prints import-time noise on stdout: keep stdout for values only.
    with contextlib.redirect_stdout(sys.stderr):
        # The project's own upsert (delete + create under a file lock, as the blocks do).
        from importlib import import_module

        from mage_ai.data_preparation.shared.secrets import (
            delete_secret,
            get_secret_value,
            get_valid_secrets_for_repo,
        )

        upsert = import_module(f"{os.path.basename(project_path)}.utils.qb_mage").upsert_mage_secret

    if args.cmd == "set":
        value = sys.stdin.read().rstrip("\r\n") if args.value == "-" else args.value
        if not value.strip():
            print(f"error: empty value for {args.name}", file=sys.stderr)
            return 2
        upsert(args.name, value.strip())
        print(f"secret {args.name} set")
    elif args.cmd == "from-env":
        missing = [env for _, env in QB_SECRETS if not os.environ.get(env, "").strip()]
        if missing:
            print(f"error: {', '.join(missing)} not set in the environment", file=sys.stderr)
            return 2
        for name, env in QB_SECRETS:
            upsert(name, os.environ[env].strip())
            print(f"secret {name} set from {env}")
    elif args.cmd == "get":
        value = get_secret_value(args.name, suppress_warning=True)
        if value is None:
            print(f"secret {args.name} not found", file=sys.stderr)
            return 1
        print(value if args.reveal else f"secret {args.name} is set ({len(value)} characters)")
    elif args.cmd == "list":
        for secret in get_valid_secrets_for_repo():
            print(secret.name)
    elif args.cmd == "delete":
        if get_secret_value(args.name, suppress_warning=True) is None:
            print(f"secret {args.name} not found", file=sys.stderr)
            return 1
        delete_secret(args.name)
        print(f"secret {args.name} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
