"""Where a number came from: git commit, device, config hash."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """Commit of the code that produced a result, '+dirty' if the tree had local edits."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        # results/ is what runs write, not code: a rewritten figure does not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def changed_since(sha: str, paths: tuple[str, ...]) -> Optional[list[str]]:
    """Files under `paths` whose content differs between commit `sha` and HEAD (a pure rename,
    git's R100, is not a change); None when git cannot tell (no repository, unknown commit)."""
    try:
        out = subprocess.run(["git", "diff", "-M", "--name-status", sha.split("+")[0], "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    rows = [line.split("\t") for line in out.splitlines() if line and not line.startswith("R100")]
    return sorted({r[-1] for r in rows if r[-1].startswith(paths)})


def is_stale(shas: set[str], code: tuple[str, ...]) -> bool:
    """Results made at `shas` are older than their code: a file under `code` changed since one of them
    (unknown history counts as stale: a refresh is the safe answer)."""
    changed = [changed_since(s, code) for s in shas] if code else []
    return any(c is None or c for c in changed)


def code_note(shas: set[str], code: tuple[str, ...]) -> str:
    """The commits results were made at and whether their code (repository paths) changed since,
    for REPORT.md: e.g. "git 13d6e7b; older than its code". No count of changes: it would change
    with every later commit and rewrite the committed report on every run."""
    note = "git " + ", ".join(sorted(s[:7] for s in shas))
    if not code:
        return note
    changed = [changed_since(s, code) for s in shas]
    if any(c is None for c in changed):
        return note + "; whether its code changed since is unknown (no git history here)"
    files = set().union(*changed)
    return note + ("; older than its code (changed since)" if files else "; current")


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.get_num_threads()} threads)"


# A dataclass field declared with `metadata=NEW_OPTION` is left out of config_dict while it holds
# its default: a config that gains an option keeps the cache keys of every model trained before.
NEW_OPTION = {"omit_if_default": True}


def config_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
                if not (f.metadata.get("omit_if_default") and getattr(cfg, f.name) == f.default)}
    if isinstance(cfg, dict):
        return {str(k): config_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_dict(v) for v in cfg]
    return cfg


def config_hash(cfg: Any) -> str:
    """Stable short hash of a (nested) dataclass config: the checkpoint-cache key."""
    blob = json.dumps(config_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
