"""``rerun=<run dir>`` (expanded by ``core.config.expand_rerun``): what differs between a recorded run and now.

The run dir is data: only the overrides a resume would replay are taken from it (mnistlab's own keys, never code,
paths or Hydra settings), with the recipe its config recorded; the new run's own overrides come after them.
"""

from __future__ import annotations

from typing import Any


def provenance_changes(
    recorded: dict[str, Any] | None,
    now: dict[str, Any],
    packages_then: dict[str, str],
    packages_now: dict[str, str],
    same_patch: bool = False,
) -> list[str]:
    """One line per part of the provenance that differs between a recorded run and this one."""
    if recorded is None:
        return ["the recorded run has no provenance (made by an mnistlab that did not record it): nothing to compare"]
    lines = []
    git_then, git_now = recorded.get("git") or {}, now.get("git") or {}
    code_then = (git_then.get("commit"), bool(git_then.get("dirty")))
    code_now = (git_now.get("commit"), bool(git_now.get("dirty")))
    if code_then != code_now:
        lines.append(f"other code: recorded commit {_code(git_then)}, now {_code(git_now)}")
    elif code_now[1] and not same_patch:
        lines.append("other uncommitted changes on the same commit: compare the two runs' uncommitted.patch")
    if recorded.get("mnistlab") != now.get("mnistlab"):
        lines.append(f"other mnistlab: recorded {recorded.get('mnistlab')}, now {now.get('mnistlab')}")
    then_m, now_m = recorded.get("machine") or {}, now.get("machine") or {}
    for key in ("torch", "lightning", "python", "cuda", "host", "device"):
        if key in then_m and then_m.get(key) != now_m.get(key):
            lines.append(f"other {key}: recorded {then_m.get(key)}, now {now_m.get(key)}")
    changed = sorted(k for k in set(packages_then) | set(packages_now) if packages_then.get(k) != packages_now.get(k))
    if packages_then and changed:
        shown = ", ".join(f"{k} {packages_then.get(k, '—')} → {packages_now.get(k, '—')}" for k in changed[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        lines.append(f"other packages: {shown}{more}")
    return lines


def _code(git: dict[str, Any]) -> str:
    if not git:
        return "none (not a git checkout)"
    return f"{str(git.get('commit'))[:12]}" + (" with uncommitted changes" if git.get("dirty") else "")
