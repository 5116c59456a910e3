#!/usr/bin/env bash
# with-pg.sh CMD...: run CMD with QBO_RS_TEST_DSN pointing at a PostgreSQL that answers,
# starting a throwaway one (scripts/pg-up.sh) when needed and stopping what was started after.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dsn="$("$here/pg-up.sh" | tail -n 1)"
trap '"$here/pg-down.sh"' EXIT
export QBO_RS_TEST_DSN="$dsn"
"$@"
