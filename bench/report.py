"""Results CSVs -> Markdown tables beside the paper's numbers, claim verdicts, REPORT.md.

Harnesses return rows; only this module formats them. Everything is written atomically.
"""
from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pandas as pd

from bench import atomic
from bench.provenance import code_note
from bench.reference import Claim, RefRow, load_claims, load_reference
from bench.registry import BEYOND_PAPER, SCALES, VARIANTS, load_all
from bench.rows import ITEM_UNITS, UNTRAINED_UNITS, Row, read_csv

SEED_SETTING = re.compile(r"^seed=\d+$")
COLUMNS = ["method", "variant", "setting", "metric", "measured", "paper", "measured/paper", "NFE", "n", "seeds"]
PIVOT_SETTINGS = 6  # a metric swept over more settings than this (see _pivot) gets a table of its own


def _key(r: Row) -> str:
    return "" if SEED_SETTING.match(r.setting) else r.setting


# ------------------------------------------------------------------------------- Markdown

def _fmt(v: Optional[float]) -> str:
    if v is None or math.isnan(v):
        return "" if v is None else "undefined (NaN)"
    return f"{v:.3e}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:.4g}"


def _measured(rs: list[Row]) -> tuple[float, str]:
    vals = [r.value for r in rs]
    if any(math.isnan(v) for v in vals):
        return math.nan, f"undefined (NaN in {sum(math.isnan(v) for v in vals)}/{len(vals)} rows)"
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return mean, _fmt(mean)
    runs = len({r.train_seed for r in rs})
    unit = f"{runs} training runs" if runs > 1 else f"{len(vals)} seeds"   # the spread is over these
    return mean, f"{_fmt(mean)} ± {_fmt(statistics.stdev(vals))} ({unit})"


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def _table(rows: list[Row], ref: dict[str, RefRow]) -> pd.DataFrame:
    """A line per group of rows that differ only by a `seed=N` setting: mean (± spread) beside the paper."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r.method, r.variant, _key(r), r.metric)].append(r)
    out = []
    for (method, variant, setting, metric), rs in groups.items():
        mean, shown = _measured(rs)
        pv = ref[rs[0].paper_row].number if rs[0].paper_row in ref else None
        out.append([method, variant, setting, metric, shown, _fmt(pv), _fmt(mean / pv) if pv else "",
                    ", ".join(dict.fromkeys(r.nfe for r in rs if r.nfe)), str(rs[0].n_samples or ""),
                    "; ".join(dict.fromkeys(r.seeds for r in rs))])
    return pd.DataFrame(out, columns=COLUMNS)


def _pivot(t: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Split sweeps off the long table: a metric whose rows without a paper number span more than PIVOT_SETTINGS
    settings across two or more methods (with the variant, where it varies), each with one NFE, n and seeds,
    gets a table of its own: a row per setting, a column per method, what each column holds said above it."""
    keep, blocks = pd.Series(True, index=t.index), []
    for metric, g in t[t.paper == ""].groupby("metric", sort=False):
        by_variant = g.variant.nunique() > 1
        g = g.assign(column=g.method + " (" + g.variant + ")" if by_variant else g.method)
        facts = g.groupby("column", sort=False)[["variant", "NFE", "n", "seeds"]]
        if g.setting.nunique() <= PIVOT_SETTINGS or len(facts) < 2 or facts.nunique().gt(1).any(axis=None):
            continue
        keep[g.index] = False
        wide = g.pivot(index="setting", columns="column", values="measured")
        wide = wide.reindex(index=g.setting.unique(), columns=g.column.unique()).fillna("").reset_index()
        said = [f"{k} = " + (v.iloc[0] if v.nunique() == 1 else ", ".join(f"{x or '—'} ({c})" for c, x in v.items()))
                for k, v in facts.first().items() if not (k == "variant" and by_variant) and (v != "").any()]
        blocks += [f"## `{metric}` by setting", "", "Each column: " + "; ".join(said), "", _md(wide), ""]
    return t[keep], blocks


def harness_markdown(label: str, scale: str, rows: list[Row], ref: dict[str, RefRow]) -> str:
    h = load_all().get(label)
    lines = [f"# {label} — scale `{scale}`", ""] + ([h.reproduces, ""] if h is not None else [])
    if rows:
        lines += [f"- dataset: {rows[0].dataset}", f"- device: {rows[0].device}",
                  f"- code: git {', '.join(sorted({r.git_sha for r in rows}))}", "", "Variants:"]
        lines += [f"- `{v}`: {VARIANTS.get(v, '(no description registered)')}"
                  for v in sorted({r.variant for r in rows})] + [""]
    long, sweeps = _pivot(_table(rows, ref))
    lines += ([_md(long), ""] if len(long) or not sweeps else []) + sweeps
    notes = dict.fromkeys(ref[r.paper_row] for r in rows if r.paper_row in ref)
    if notes:
        lines += ["Paper rows compared:", ""] + [f"- `{p.ref_id}` ({p.source}): {p.method} {p.setting} {p.metric} = "
                                                 f"{p.value}" + (f" — {p.note}" if p.note else "") for p in notes]
        lines.append("")
    cited = [p for p in ref.values() if h is not None and p.ours == "" and p.metric == "fid"
             and any(p.ref_id.startswith(pre) for pre in h.paper_rows)]
    if rows and cited:   # the paper's comparison rows for other methods: shown, never run here
        lines += ["Cited from the paper (other methods; not run here):", "", _md(pd.DataFrame(
            [[p.group, p.method, p.value, p.nfe, p.source] for p in cited],
            columns=["group", "method", "FID", "NFE", "source"])), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- claims

VERDICT_FIELDS = ["claim_id", "claim", "section", "harness", "metric", "variant", "verdict", "treatment",
                  "baseline", "difference", "interval", "replicates", "dataset", "detail", "git_sha"]
SECTIONS = ("paper", "structural", "beyond the paper")   # how a verdict line is reported (REPORT.md)
CONFIDENCE = 0.95
SPREAD_RULE = ("the 95 % confidence interval of the treatment-minus-baseline difference decides (Student's t: "
               "paired over shared sampling seeds or test items, else Welch's over the replicates): an interval that covers "
               "zero is inconclusive; one that excludes it is held or not held by its sign. Replicates are the "
               "training runs where the rows name them (sampling seeds averaged within each run), else parts of "
               "the test data where rows are per part (docking complexes, groups of held-out images), else the "
               "sampling seed ranges. One replicate on either side gives no interval: inconclusive. A threshold "
               "claim uses the one-sample interval of the treatment's mean")


def _select(rows: list[Row], selector: str) -> list[Row]:
    method, _, setting = selector.partition("|")
    return [r for r in rows if r.method == method.strip() and (not setting or r.setting == setting.strip())]


def _matched(baseline: list[Row], variant: str) -> list[Row]:
    """The baseline rows a treatment variant is compared with when no selection metric is named: the same
    variant (its matched baseline; 'tuned, stratified latents' matches 'tuned'), else the paper's ('app-f')."""
    for want in (variant, variant.split(", ")[0], "app-f"):
        rows = [r for r in baseline if r.variant == want]
        if rows:
            return rows
    return baseline if len({r.variant for r in baseline}) <= 1 else []


def best_baseline(baseline: list[Row], pool: list[Row], select_by: str) -> tuple[list[Row], str]:
    """The baseline of the same budget a treatment must beat: of the baseline method's variants, the one with
    the lowest mean `select_by` (a validation metric measured apart from the test numbers). Returns its rows
    and a sentence naming the choice and the scores it was made on."""
    methods = {r.method for r in baseline}
    scores = defaultdict(list)
    for r in pool:
        if r.metric == select_by and r.method in methods and not math.isnan(r.value):
            scores[r.variant].append(r.value)
    scored = {v: statistics.fmean(x) for v, x in scores.items() if any(b.variant == v for b in baseline)}
    if not scored:
        return [], f"no {select_by} rows to choose the baseline by"
    best = min(scored, key=scored.get)
    why = (f"baseline: the {'/'.join(sorted(methods))} variant with the lowest {select_by}, `{best}` ("
           + ", ".join(f"{v} {_fmt(x)}" for v, x in sorted(scored.items(), key=lambda kv: kv[1])) + ")")
    return [r for r in baseline if r.variant == best], why


@dataclasses.dataclass(frozen=True)
class Replicates:
    """Independent repetitions of one measurement: key -> value, and what a key is."""
    values: dict[str, float]
    unit: str          # "training runs" or "sampling seed ranges"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    def said(self) -> str:
        unit = self.unit if self.n != 1 else self.unit.replace("runs", "run").replace("ranges", "range")
        one = self.unit != "training runs" and self.unit not in UNTRAINED_UNITS and self.n > 0
        return f"{self.n} {unit}" + (" of one training run" if one else "")


def replicates(rows: list[Row]) -> Replicates:
    """The unit of replication the rows carry: training runs (Row.train_seed) where they name them, each the
    mean over its sampling seeds; else parts of the test data (Row.seeds with a bench.rows.ITEM_UNITS prefix);
    else sampling seed ranges (Row.seeds)."""
    by: dict[str, list[float]] = defaultdict(list)
    items = [u for prefix, u in ITEM_UNITS.items() if rows and all(r.seeds.startswith(prefix) for r in rows)]
    unit = "training runs" if any(r.train_seed for r in rows) else items[0] if items else "sampling seed ranges"
    for r in rows:
        by[r.train_seed if unit == "training runs" else r.seeds].append(r.value)
    return Replicates({k: statistics.fmean(v) for k, v in by.items()}, unit)


def _t(df: float) -> float:
    from scipy.stats import t
    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def interval(t: Replicates, b: Replicates) -> Optional[tuple[float, float, bool]]:
    """The CONFIDENCE interval of mean(t) - mean(b): (low, high, paired), or None with one replicate on a side.
    Paired (Student's t on the differences) when both sides hold the same sampling seed ranges or the same test
    complexes: the same seeds (items) make the same noise, so the differences carry the spread; otherwise
    Welch's t."""
    if t.n < 2 or b.n < 2:
        return None
    diff = t.mean - b.mean
    if t.unit == b.unit and t.unit != "training runs" and set(t.values) == set(b.values):
        d = [t.values[k] - b.values[k] for k in t.values]
        half = _t(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
        return diff - half, diff + half, True
    vt, vb = statistics.variance(t.values.values()) / t.n, statistics.variance(b.values.values()) / b.n
    if vt + vb == 0:
        return diff, diff, False
    df = (vt + vb) ** 2 / (vt ** 2 / (t.n - 1) + vb ** 2 / (b.n - 1))   # Welch-Satterthwaite
    half = _t(df) * math.sqrt(vt + vb)
    return diff - half, diff + half, False


def compare(t: Replicates, b: Replicates, relation: str) -> dict[str, str]:
    """SPREAD_RULE: treatment and baseline replicates -> verdict, the difference and its interval."""
    diff = t.mean - b.mean
    out = {"treatment": _fmt(t.mean), "baseline": _fmt(b.mean), "difference": _fmt(diff),
           "replicates": f"{t.said()} vs {b.said()}"}
    ci = interval(t, b)
    if ci is None:
        return {**out, "verdict": "inconclusive", "interval": "",
                "detail": "one replicate on a side: no spread, so no verdict"}
    lo, hi, paired = ci
    out["interval"] = f"[{_fmt(lo)}, {_fmt(hi)}]" + (" paired" if paired else "")
    if lo <= 0 <= hi:
        return {**out, "verdict": "inconclusive", "detail": "the interval covers zero"}
    held = diff < 0 if relation == "lower" else diff > 0
    return {**out, "verdict": "held" if held else "not held", "detail": ""}


def against_threshold(t: Replicates, relation: str, threshold: float) -> dict[str, str]:
    """A 'below'/'above' claim: the one-sample interval of the treatment's mean against the threshold."""
    out = {"treatment": _fmt(t.mean), "baseline": f"threshold {threshold:g}", "difference": _fmt(t.mean - threshold),
           "replicates": t.said()}
    if t.n < 2:
        return {**out, "verdict": "inconclusive", "interval": "", "detail": "one replicate: no spread, so no verdict"}
    half = _t(t.n - 1) * statistics.stdev(t.values.values()) / math.sqrt(t.n)
    lo, hi = t.mean - half, t.mean + half
    out["interval"] = f"mean in [{_fmt(lo)}, {_fmt(hi)}]"
    if lo <= threshold <= hi:
        return {**out, "verdict": "inconclusive", "detail": "the interval covers the threshold"}
    held = hi < threshold if relation == "below" else lo > threshold
    return {**out, "verdict": "held" if held else "not held", "detail": ""}


def _section(c: Claim, variant: str) -> str:
    if variant in BEYOND_PAPER:
        return "beyond the paper"
    return "structural" if c.kind == "structural" else "paper"


def evaluate_claim(c: Claim, rows: Optional[list[Row]], pool: Optional[list[Row]] = None) -> list[dict]:
    """One verdict per treatment variant: held / not held / inconclusive (SPREAD_RULE) / not run, with the
    numbers, the interval and the unit of replication. `pool`: every row at this scale (where a claim's
    `select_by` validation metric is found; default: `rows`)."""
    base = {"claim_id": c.claim_id, "claim": c.claim, "harness": c.harness, "metric": c.metric,
            "section": _section(c, "")}
    if c.relation == "qualitative":
        return [{**base, "variant": "", "verdict": "not run", "detail": "qualitative claim: no automatic check; see the figure"}]
    if rows is None:
        return [{**base, "variant": "", "verdict": "not run", "detail": f"harness {c.harness} has not been run at this scale"}]
    treated = [r for r in _select(rows, c.treatment) if r.metric == c.metric]
    if not treated:
        return [{**base, "variant": "", "verdict": "not run", "detail": f"no rows for {c.treatment!r} metric {c.metric}"}]
    all_baseline = [r for r in _select(rows, c.baseline) if r.metric == c.metric] if c.baseline else []
    chosen, why = ([], "")
    if c.select_by and all_baseline:
        chosen, why = best_baseline(all_baseline, pool if pool is not None else rows, c.select_by)
    by_variant: dict[str, list[Row]] = defaultdict(list)
    for r in treated:
        by_variant[r.variant].append(r)
    out = []
    for variant, trs in by_variant.items():
        baseline = chosen if c.select_by else _matched(all_baseline, variant)
        v = {**base, "variant": variant, "section": _section(c, variant), "dataset": trs[0].dataset,
             "git_sha": ", ".join(sorted({r.git_sha for r in trs + baseline}))}
        undefined = sum(math.isnan(r.value) for r in trs)
        if undefined:  # e.g. the geometry of a sampler that diverged: the claim is not shown
            out.append({**v, "verdict": "not held", "treatment": "undefined",
                        "baseline": _fmt(statistics.fmean(r.value for r in baseline)) if baseline else "",
                        "replicates": f"{replicates(trs).said()}, undefined in {undefined} rows"
                                      + (f" vs {replicates(baseline).said()}" if baseline else ""),
                        "detail": f"the measurement is undefined (NaN) in {undefined}/{len(trs)} rows: "
                                  "the model's sampler diverged" + (f"; {why}" if why else "")})
            continue
        if c.relation in ("below", "above"):
            out.append({**v, **against_threshold(replicates(trs), c.relation, float(c.threshold))})
            continue
        if not baseline:
            out.append({**v, "verdict": "not run", "detail": why or f"no rows for baseline {c.baseline!r}"})
            continue
        v["detail"] = why
        if c.scope == "every_setting":
            tb, bb = defaultdict(list), defaultdict(list)   # setting -> rows (replicates)
            for d, rs in ((tb, trs), (bb, baseline)):
                for r in rs:
                    d[_key(r)].append(r)
            shared = [k for k in tb if k in bb]
            if not shared:
                out.append({**v, "verdict": "not run", "detail": "treatment and baseline share no setting"})
                continue
            per = {k: compare(replicates(tb[k]), replicates(bb[k]), c.relation) for k in shared}
            counts = {w: [k for k in shared if per[k]["verdict"] == w] for w in ("held", "not held", "inconclusive")}
            verdict = ("not held" if counts["not held"] else "inconclusive" if counts["inconclusive"] else "held")
            detail = f"{len(counts['held'])}/{len(shared)} settings {c.relation}"
            for w in ("not held", "inconclusive"):
                if counts[w]:
                    detail += f"; {w} at " + ", ".join(
                        f"{k or '(all)'} ({per[k]['difference']} {per[k]['interval'] or per[k]['detail']})"
                        for k in counts[w][:6])
                    if len(counts[w]) > 6:
                        detail += f", … ({len(counts[w])} in all)"
            out.append({**v, "verdict": verdict, "treatment": _fmt(statistics.fmean(r.value for r in trs)),
                        "baseline": _fmt(statistics.fmean(r.value for r in baseline)),
                        "replicates": per[shared[0]]["replicates"] + " per setting",
                        "interval": f"one per setting ({len(shared)}): see detail",
                        "detail": "; ".join(x for x in (detail, why) if x)})
        else:
            res = compare(replicates(trs), replicates(baseline), c.relation)
            out.append({**v, **res, "detail": "; ".join(x for x in (res["detail"], why) if x)})
    return out


# ------------------------------------------------------------------------------- REPORT.md

def with_fd_metrics(c: Claim, rows: Optional[list[Row]]) -> list[Claim]:
    """A claim on FID (metric "fid" or "fid_<...>") is also checked in every `fd_<network>` distance
    measured beside it (bench/metrics/feature_net.py): the same comparison, its own verdict line."""
    if not c.metric.startswith("fid") or not rows:
        return [c]
    nets = sorted({r.metric.split("_generative")[0] for r in rows if r.metric.startswith("fd_")})
    return [c] + [dataclasses.replace(c, metric=n + c.metric[len("fid"):]) for n in nets]


def render(out: Path) -> list[Path]:
    """Rebuild every <scale>/<harness>.md and <scale>/claims.csv from the CSVs, then REPORT.md for the
    committed scales and, when smoke ran, smoke/REPORT.md: a smoke run (CI, newcomers; its numbers mean
    nothing) never rewrites a committed file. Returns the reports written."""
    out, harnesses, ref, claims = Path(out), load_all(), load_reference(), load_claims()
    ran: dict[str, dict[str, list[Row]]] = {}
    for scale in SCALES:
        for csv_path in sorted((out / scale).glob("*.csv")):
            if csv_path.stem in harnesses:
                ran.setdefault(scale, {})[csv_path.stem] = rows = read_csv(csv_path)
                atomic.write_text(csv_path.with_suffix(".md"), harness_markdown(csv_path.stem, scale, rows, ref))
    verdicts = {s: claim_verdicts(claims, ran[s]) for s in ran}
    for s, v in verdicts.items():
        atomic.write_text(out / s / "claims.csv", v.to_csv(index=False, lineterminator="\n"))
    written = [_report(out, [s for s in SCALES if s != "smoke"], harnesses, ran, verdicts, claims)]
    if "smoke" in ran:
        written.append(_report(out, ["smoke"], harnesses, ran, verdicts, claims))
    return written


def claim_verdicts(claims: list[Claim], ran: dict[str, list[Row]]) -> pd.DataFrame:
    """Every claim (and its fd_* twins) judged on one scale's rows; the validation metrics a claim selects its
    baseline by may live in any harness of the scale."""
    pool = [r for rows in ran.values() for r in rows]
    return pd.DataFrame([v for c in claims for c2 in with_fd_metrics(c, ran.get(c.harness))
                         for v in evaluate_claim(c2, ran.get(c.harness), pool)], columns=VERDICT_FIELDS,
                        dtype=object).fillna("")


SMOKE_BANNER = ("**Scale `smoke` is a pipeline check: its numbers are not meaningful.** Smoke runs train for "
                "seconds on a few samples; they show that every harness runs end to end, nothing more.")


def _harness_table(harnesses, ran: dict, scales: list[str], link: str) -> tuple[pd.DataFrame, list[str]]:
    """What of the paper is reproduced (a row per harness), and the stale results (older than their code)."""
    lines, stale = [], []
    for label, h in harnesses.items():
        cells = []
        for s in scales:
            if label in ran.get(s, {}):
                note = code_note({r.git_sha for r in ran[s][label]}, h.code)
                cells.append(f"[{s}]({link.format(s=s)}{label}.md) ({note})")
                if "older than its code" in note:
                    stale.append(f"`{s}/{label}` ({note}): refresh with `python -m bench {label} --scale {s}`")
        ran_as = "ran (pipeline check)" if scales == ["smoke"] else "reproduced"
        status = (ran_as if cells else "built, not run yet") if h.built else f"not built yet ({h.issue})"
        lines.append({"harness": f"`{label}`", "paper": h.reproduces, "status": status,
                      "results (commit; current or older than its code)": ", ".join(cells) or "—"})
    return pd.DataFrame(lines), stale


def _headline(claims: list[Claim], verdicts: dict[str, pd.DataFrame], scales: list[str]) -> pd.DataFrame:
    """One line per paper claim, scale and treatment variant: the verdict on the claim's own metric."""
    lines = []
    for c in claims:
        for s in scales:
            v = verdicts.get(s)
            if v is None:
                continue
            mine = v[(v.claim_id == c.claim_id) & (v.metric == c.metric) & (v.section != "beyond the paper")]
            for _, x in mine.iterrows():
                numbers = f"{x.treatment} vs {x.baseline}" if x.treatment else ""
                lines.append({"claim": f"{c.claim_id}" + (" (structural)" if x.section == "structural" else ""),
                              "scale": s, "dataset": x.dataset, "check": f"{c.harness}: {c.metric}"
                              + (f" [{x.variant}]" if x.variant else ""), "verdict": f"**{x.verdict}**",
                              "DisCo vs baseline": numbers,
                              "difference [95 % CI]": f"{x.difference} {x.interval}".strip(),
                              "replicates": x.replicates})
    return pd.DataFrame(lines)


def _verdict_table(v: pd.DataFrame) -> str:
    return _md(pd.DataFrame({
        "claim": v.claim_id + ": " + v.claim, "harness: metric": v.harness + ": " + v.metric,
        "variant": v.variant, "verdict": "**" + v.verdict + "**", "treatment": v.treatment,
        "baseline": v.baseline, "difference [95 % CI]": (v.difference + " " + v.interval).str.strip(),
        "replicates": v.replicates, "detail": v.detail}))


SECTION_TITLES = {
    "paper": "Paper claims (empirical checks)",
    "structural": "Structural checks: true by how the model is built (see each claim's note in reference/claims.csv)",
    "beyond the paper": "Beyond the paper: variants the paper does not have (never the paper's verdict)"}


def _report(out: Path, scales: list[str], harnesses, ran: dict, verdicts: dict[str, pd.DataFrame],
            claims: list[Claim]) -> Path:
    """REPORT.md for the committed scales, or smoke/REPORT.md for smoke alone."""
    top = scales != ["smoke"]
    path, title, link = (out / "REPORT.md", "", "{s}/") if top else (out / "smoke/REPORT.md", " — scale `smoke`", "")
    lines = [f"# DisCo-Bench report{title}", ""]
    if not top:
        lines += [SMOKE_BANNER, ""]
    lines += ["Generated by `python -m bench report` from the CSVs under this folder. Each number comes from a run "
              "of the code at the git commit named in its CSV row; the paper's numbers come from `reference/`."
              + (" Smoke runs (CI, newcomers) write `smoke/REPORT.md`, which is not committed: "
                 "the smoke scale is a pipeline check — numbers not meaningful." if top else ""), "",
              f"Verdict rule: {SPREAD_RULE}.", ""]
    shown = [s for s in scales if s in verdicts]
    head = _headline(claims, verdicts, shown)
    if len(head):
        lines += ["## Headline: the paper's claims", "", _md(head), "",
                  "Claims 1–9 are listed in `reference/claims.csv` with the paper's words. Structural checks "
                  "hold by construction and say nothing about the paper; beyond-paper variants are listed "
                  "further down. The datasets are stand-ins where named so: no ImageNet or PDBBind here.", ""]
    table, stale = _harness_table(harnesses, ran, scales, link)
    lines += ["## What is reproduced", "", _md(table), ""]
    lines += ["## Stale results", ""] + (
        [f"- {x}" for x in stale] + ["", "`python -m bench all --scale small --stale` refreshes exactly these "
                                      "(without `--stale`: every harness)."]
        if stale else ["None: every result is current with the code that makes it."]) + [""]
    for scale in shown:
        v = verdicts[scale]
        lines += [f"## Claims at scale `{scale}`", ""] + ([SMOKE_BANNER, ""] if scale == "smoke" else [])
        for section in SECTIONS:
            part = v[v.section == section]
            if len(part):
                lines += [f"### {SECTION_TITLES[section]}", "", _verdict_table(part), ""]
    if verdicts and all(v.empty for v in verdicts.values()):   # every claim gives a row: no claims
        lines += ["", "(reference/claims.csv is missing: no verdicts)"]
    return atomic.write_text(path, "\n".join(lines + [""]))
