"""The paper's numbers (reference/*.csv) and claims (reference/claims.csv), as data."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Optional

from bench.provenance import REPO_ROOT

REFERENCE_DIR = REPO_ROOT / "reference"
RELATIONS = ("lower", "higher", "below", "above", "qualitative")
# where a reference number comes from (reference/SCHEMA.md): printed in the paper, computed from
# printed numbers, or taken from public code / another paper
ORIGINS = ("paper", "derived", "external")
KINDS = ("empirical", "structural")


@dataclasses.dataclass(frozen=True)
class RefRow:
    ref_id: str
    table: str
    group: str
    method: str
    setting: str
    metric: str
    value: str
    nfe: str
    ours: str
    source: str
    note: str
    origin: str      # one of ORIGINS
    quote: str       # fragment of shared/paper/TABLES.md with {value} (and {nfe}); empty if none

    @property
    def number(self) -> Optional[float]:
        try:
            return float(self.value)
        except ValueError:
            return None


@dataclasses.dataclass(frozen=True)
class Claim:
    claim_id: str
    claim: str
    harness: str
    metric: str
    relation: str
    treatment: str
    baseline: str
    threshold: str
    scope: str
    note: str
    kind: str = "empirical"   # one of KINDS; "structural": true by how the model is built (the note says why)
    select_by: str = ""       # a validation metric: the baseline is the baseline method's variant lowest in it


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_reference(root: Path = REFERENCE_DIR) -> dict[str, RefRow]:
    out: dict[str, RefRow] = {}
    for path in sorted(root.glob("*.csv")):
        if path.name == "claims.csv":
            continue
        for d in _read(path):
            r = RefRow(**{f.name: d.get(f.name, "") or "" for f in dataclasses.fields(RefRow)})
            if r.ref_id in out:
                raise ValueError(f"{path}: duplicate ref_id {r.ref_id!r}")
            if r.origin not in ORIGINS:
                raise ValueError(f"{path}: {r.ref_id}: origin {r.origin!r} is not one of {ORIGINS}")
            out[r.ref_id] = r
    return out


def load_claims(root: Path = REFERENCE_DIR) -> list[Claim]:
    path = root / "claims.csv"
    if not path.exists():
        return []
    claims = [Claim(**{f.name: d.get(f.name, "") or "" for f in dataclasses.fields(Claim)}) for d in _read(path)]
    for c in claims:
        if c.kind not in KINDS:
            raise ValueError(f"{path}: claim {c.claim_id}: kind {c.kind!r} is not one of {KINDS}")
    return claims
