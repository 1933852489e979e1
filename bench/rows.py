"""The harness output contract: one `Row` per measured number (see DESIGN.md, Contracts)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import pandas as pd

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
    seeds: str = ""       # sampling seeds, e.g. "0-7999"
    train_seed: str = ""  # the training run (replicate) the row comes from, e.g. "1"; "" = one training run
    scale: str = ""
    dataset: str = ""     # stand-ins are named as such
    feature_extractor: str = ""
    device: str = ""
    git_sha: str = ""
    seconds: float = 0.0  # wall time of the work behind the row


FIELDS = [f.name for f in dataclasses.fields(Row)]
# `seeds` of rows measured on one part of the test data: the report's replicates are then these parts, paired
# across methods by part (the same items, noise and draws). Prefix -> the unit's name.
COMPLEX_SEEDS = "complex "                  # docking: one test complex
HELD_OUT_SEEDS = "held-out images "         # images: one group of held-out images
TIMING_REPEAT_SEEDS = "timed repeat "       # timing: one timed run of the same work (after a warm-up)
ITEM_UNITS = {COMPLEX_SEEDS: "test complexes", HELD_OUT_SEEDS: "held-out image groups",
              TIMING_REPEAT_SEEDS: "timed repeats"}
UNTRAINED_UNITS = {"timed repeats"}          # replicates that involve no trained model
LEGACY_FIELDS = [f for f in FIELDS if f != "train_seed"]


def write_csv(path: Path, rows: Iterable[Row]) -> Path:
    """One line per row in `FIELDS` order: value as repr(float), seconds as %.2f, "" stays ""."""
    df = pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=FIELDS)
    df["value"] = [repr(float(v)) for v in df["value"]]
    df["seconds"] = [f"{float(s):.2f}" for s in df["seconds"]]
    return atomic.write_text(path, df.to_csv(index=False, lineterminator="\n"))


def read_csv(path: Path) -> list[Row]:
    try:  # every cell as text ("" stays "", never NaN), then the three typed columns
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    if list(df.columns) == LEGACY_FIELDS:   # results written before rows named their training run
        df.insert(FIELDS.index("train_seed"), "train_seed", "")
    if list(df.columns) != FIELDS:
        raise ValueError(f"{path}: columns {list(df.columns)} are not the row contract {FIELDS}")
    df["value"] = df["value"].map(float)
    df["n_samples"] = df["n_samples"].map(lambda v: int(v or 0))
    df["seconds"] = df["seconds"].map(lambda v: float(v or 0))
    return [Row(**d) for d in df.to_dict("records")]
