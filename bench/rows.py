"""The harness output contract: one `Row` per measured number (see DESIGN.md, Contracts)."""
from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Iterable

from bench import atomic


@dataclasses.dataclass
class Row:
    harness: str          # registered label, e.g. "w2"
    paper_row: str        # ref_id in reference/*.csv this row is compared with ("" if none)
    method: str           # e.g. "DisCo-Diff", "DM"
    variant: str          # "app-f" for the paper's configuration; any other name is a deviation
    setting: str          # e.g. "t=0.5", "cfg=1", "" if none
    metric: str           # e.g. "w2", "curvature"
    value: float
    nfe: str = ""         # counted by the sampler; "" if no sampler was involved
    n_samples: int = 0
    seeds: str = ""       # e.g. "0-2"
    scale: str = ""
    dataset: str = ""     # stand-ins are named as such
    feature_extractor: str = ""
    device: str = ""
    git_sha: str = ""
    seconds: float = 0.0  # wall time of the work behind the row


FIELDS = [f.name for f in dataclasses.fields(Row)]


def write_csv(path: Path, rows: Iterable[Row]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = dataclasses.asdict(r)
        d["value"] = repr(float(d["value"]))
        d["seconds"] = f"{float(d['seconds']):.2f}"
        w.writerow(d)
    return atomic.write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[Row]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames} are not the row contract {FIELDS}")
        out = []
        for d in reader:
            d["value"] = float(d["value"])
            d["n_samples"] = int(d["n_samples"] or 0)
            d["seconds"] = float(d["seconds"] or 0)
            out.append(Row(**d))
        return out
