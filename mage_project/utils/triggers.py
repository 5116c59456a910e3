"""The post-run policy of one-time triggers: an @once trigger that succeeded is set inactive in
its triggers.yaml, the durable record (Mage only flips its database)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import yaml

from mage_project.utils.variables import repo_path

# --------------------------------------------------------------------------------------------
# Post-run policy for one-time triggers: disabled in triggers.yaml once they succeeded.
# --------------------------------------------------------------------------------------------


def triggers_file(kwargs: Dict[str, Any], pipeline_uuid: str) -> str:
    return os.path.join(repo_path(kwargs), "pipelines", pipeline_uuid, "triggers.yaml")


def read_triggers(path: str) -> Tuple[str, Any]:
    """A triggers.yaml's text and what it parses to; ``("", None)`` when there is no such file."""
    if not os.path.exists(path):
        return "", None
    with open(path) as f:
        text = f.read()
    return text, yaml.safe_load(text)


def trigger_entries(data: Any) -> List[Dict[str, Any]]:
    """The triggers of a parsed triggers.yaml (entries that are not mappings are skipped)."""
    return [t for t in (data or {}).get("triggers") or [] if isinstance(t, dict)]


def _find_trigger(data: Any, name: str) -> Optional[Dict[str, Any]]:
    return next((t for t in trigger_entries(data) if t.get("name") == name), None)


def disable_once_trigger(path: str, name: str) -> bool:
    """Sets ``status: inactive`` on the @once trigger ``name`` in ``path``; True if it changed.

    Mage only flips the schedule in its database, so a fresh database (new container, wiped
    volume) would fire the trigger again; the file is the durable record. The edit keeps the
    file's comments and layout (only that trigger's status line changes) and is verified by
    re-parsing; the write is atomic."""
    text, data = read_triggers(path)
    trigger = _find_trigger(data, name)
    if trigger is None or trigger.get("schedule_interval") != "@once" or trigger.get("status") != "active":
        return False
    lines = text.splitlines(keepends=True)
    items: List[Tuple[int, int]] = []  # (first line, indent) of every list item under triggers:
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)- ", line)
        if m:
            items.append((i, len(m.group(1))))
    new_lines = None
    for n, (first, indent) in enumerate(items):
        last = next((f for f, ind in items[n + 1 :] if ind <= indent), len(lines))
        block = lines[first:last]
        if not any(re.match(rf'^\s*(- )?name:\s*[\'"]?{re.escape(name)}[\'"]?\s*(#.*)?$', line) for line in block):
            continue
        for j in range(first, last):
            m = re.match(r'^(\s*(?:- )?status:\s*)[\'"]?active[\'"]?(\s*(#.*)?)$', lines[j].rstrip("\n"))
            if m:
                candidate = list(lines)
                candidate[j] = f"{m.group(1)}inactive{m.group(2)}\n"
                new_lines = candidate
                break
        if new_lines:
            break
    new_text = "".join(new_lines) if new_lines else None
    if new_text is not None:
        check = yaml.safe_load(new_text)
        expected = yaml.safe_load(text)
        found = _find_trigger(expected, name)
        assert found is not None  # the same text as `data`, where it was found
        found["status"] = "inactive"
        if check != expected:
            new_text = None
    if new_text is None:  # unusual layout: rewrite it (comments are lost, content is exact)
        trigger["status"] = "inactive"
        new_text = yaml.safe_dump(data, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".triggers.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True
