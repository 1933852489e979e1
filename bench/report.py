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
from bench.registry import SCALES, VARIANTS, load_all
from bench.rows import Row, read_csv

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
    return mean, _fmt(mean) if len(vals) == 1 else f"{_fmt(mean)} ± {_fmt(statistics.stdev(vals))} ({len(vals)} seeds)"


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

VERDICT_FIELDS = ["claim_id", "claim", "harness", "metric", "variant", "verdict", "treatment", "baseline",
                  "detail", "git_sha"]


def _select(rows: list[Row], selector: str) -> list[Row]:
    method, _, setting = selector.partition("|")
    return [r for r in rows if r.method == method.strip() and (not setting or r.setting == setting.strip())]


def _matched(baseline: list[Row], variant: str) -> list[Row]:
    """The baseline rows a treatment variant is compared with: the same variant (its matched
    baseline; 'tuned, stratified latents' matches 'tuned'), else the paper's ('app-f')."""
    for want in (variant, variant.split(", ")[0], "app-f"):
        rows = [r for r in baseline if r.variant == want]
        if rows:
            return rows
    return baseline if len({r.variant for r in baseline}) <= 1 else []


SPREAD_RULE = ("a difference within 2 standard errors (over the replicates: training seeds or sampling seed "
               "ranges, as the rows' seeds say; paired when both sides have the same seeds) is inconclusive; "
               "beyond it, held or not held by its sign")


def compare(tv: list[float], bv: list[float], better, paired: bool = False) -> tuple[str, str]:
    """One stated rule (SPREAD_RULE) turning treatment and baseline replicates into a verdict and its numbers.
    `paired`: tv[i] and bv[i] share their seeds (e.g. the same sampling seeds on both models), so the
    spread is that of the differences. With one replicate on either side there is no spread: the sign
    decides, and the detail says so."""
    tm, bm = statistics.fmean(tv), statistics.fmean(bv)
    detail = f"mean {_fmt(tm)} (n={len(tv)}) vs {_fmt(bm)} (n={len(bv)}), difference {_fmt(tm - bm)}"
    if len(tv) < 2 or len(bv) < 2:
        return ("held" if better(tm, bm) else "not held"), detail + " (one replicate: no spread)"
    if paired:
        se = statistics.stdev([a - b for a, b in zip(tv, bv)]) / math.sqrt(len(tv))
    else:
        se = math.sqrt(statistics.variance(tv) / len(tv) + statistics.variance(bv) / len(bv))
    detail += f" ± {_fmt(se)} (1 s.e.{', paired by seeds' if paired else ''})"
    if abs(tm - bm) <= 2 * se:
        return "inconclusive", detail + ": within 2 s.e."
    return ("held" if better(tm, bm) else "not held"), detail


def evaluate_claim(c: Claim, rows: Optional[list[Row]]) -> list[dict]:
    """One verdict per treatment variant: held / not held / inconclusive (SPREAD_RULE) / not run, with the numbers."""
    base = {"claim_id": c.claim_id, "claim": c.claim, "harness": c.harness, "metric": c.metric}
    if c.relation == "qualitative":
        return [{**base, "variant": "", "verdict": "not run", "detail": "qualitative claim: no automatic check; see the figure"}]
    if rows is None:
        return [{**base, "variant": "", "verdict": "not run", "detail": f"harness {c.harness} has not been run at this scale"}]
    treated = _select(rows, c.treatment)
    if not treated:
        return [{**base, "variant": "", "verdict": "not run", "detail": f"no rows for {c.treatment!r} metric {c.metric}"}]
    treated = [r for r in treated if r.metric == c.metric]
    baseline = [r for r in _select(rows, c.baseline) if r.metric == c.metric] if c.baseline else []
    out = []
    by_variant: dict[str, list[Row]] = defaultdict(list)
    for r in treated:
        by_variant[r.variant].append(r)
    all_baseline = baseline
    for variant, trs in by_variant.items():
        baseline = _matched(all_baseline, variant)
        sha = ", ".join(sorted({r.git_sha for r in trs + baseline}))
        v = {**base, "variant": variant, "git_sha": sha}
        undefined = sum(math.isnan(r.value) for r in trs)
        if undefined:  # e.g. the geometry of a sampler that diverged: the claim is not shown
            out.append({**v, "verdict": "not held", "treatment": "undefined",
                        "detail": f"the measurement is undefined (NaN) in {undefined}/{len(trs)} rows: "
                                  "the model's sampler diverged"})
            continue
        if c.relation in ("below", "above"):
            m = statistics.fmean(r.value for r in trs)
            thr = float(c.threshold)
            held = m < thr if c.relation == "below" else m > thr
            out.append({**v, "verdict": "held" if held else "not held", "treatment": _fmt(m),
                        "baseline": f"threshold {c.threshold}", "detail": f"mean {_fmt(m)} {c.relation} {c.threshold}"})
            continue
        if not baseline:
            out.append({**v, "verdict": "not run", "detail": f"no rows for baseline {c.baseline!r}"})
            continue
        better = (lambda a, b: a < b) if c.relation == "lower" else (lambda a, b: a > b)
        if c.scope == "every_setting":
            tb, bb = defaultdict(list), defaultdict(list)   # setting -> values (replicates)
            for d, rs in ((tb, trs), (bb, baseline)):
                for r in rs:
                    d[_key(r)].append(r.value)
            shared = [k for k in tb if k in bb]
            if not shared:
                out.append({**v, "verdict": "not run", "detail": "treatment and baseline share no setting"})
                continue
            per = {k: compare(tb[k], bb[k], better) for k in shared}
            counts = {w: [k for k in shared if per[k][0] == w] for w in ("held", "not held", "inconclusive")}
            verdict = ("not held" if counts["not held"] else "inconclusive" if counts["inconclusive"] else "held")
            detail = f"{len(counts['held'])}/{len(shared)} settings {c.relation}"
            for w in ("not held", "inconclusive"):
                if counts[w]:
                    detail += f"; {w} at " + ", ".join(f"{k or '(all)'} ({per[k][1]})" for k in counts[w][:6])
                    if len(counts[w]) > 6:
                        detail += f", … ({len(counts[w])} in all)"
            out.append({**v, "verdict": verdict, "treatment": _fmt(statistics.fmean(r.value for r in trs)),
                        "baseline": _fmt(statistics.fmean(r.value for r in baseline)), "detail": detail})
        else:
            tv, bv = [r.value for r in trs], [r.value for r in baseline]
            ts, bs = [r.seeds for r in trs], [r.seeds for r in baseline]
            paired = len(set(ts)) == len(ts) and sorted(ts) == sorted(bs)
            if paired:   # line the baseline up with the treatment's seeds
                by_seed = {r.seeds: r.value for r in baseline}
                bv = [by_seed[x] for x in ts]
            verdict, detail = compare(tv, bv, better, paired)
            out.append({**v, "verdict": verdict, "treatment": _fmt(statistics.fmean(tv)),
                        "baseline": _fmt(statistics.fmean(bv)), "detail": detail})
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
    verdicts = {s: pd.DataFrame([v for c in claims for c2 in with_fd_metrics(c, ran[s].get(c.harness))
                                 for v in evaluate_claim(c2, ran[s].get(c.harness))],
                                columns=VERDICT_FIELDS).fillna("") for s in ran}
    for s, v in verdicts.items():
        atomic.write_text(out / s / "claims.csv", v.to_csv(index=False, lineterminator="\n"))
    written = [_report(out, [s for s in SCALES if s != "smoke"], harnesses, ran, verdicts)]
    if "smoke" in ran:
        written.append(_report(out, ["smoke"], harnesses, ran, verdicts))
    return written


def _report(out: Path, scales: list[str], harnesses, ran: dict, verdicts: dict[str, pd.DataFrame]) -> Path:
    """REPORT.md for the committed scales, or smoke/REPORT.md for smoke alone."""
    top = scales != ["smoke"]
    path, title, link = (out / "REPORT.md", "", "{s}/") if top else (out / "smoke/REPORT.md", " — scale `smoke`", "")
    lines = [f"# DisCo-Bench report{title}", "",
             "Generated by `python -m bench report` from the CSVs under this folder. Each number comes from a run "
             "of the code at the git commit named in its CSV row; the paper's numbers come from `reference/`."
             + (" Smoke runs (CI; their numbers mean nothing) write `smoke/REPORT.md`, which is not committed."
                if top else ""), "", "## Harnesses", "", _md(pd.DataFrame([
                 {"harness": f"`{label}`", "reproduces": h.reproduces,
                  "status": "built" if h.built else f"not built yet ({h.issue})",
                  "results (code they were made with)": ", ".join(   # a reviewer sees which results predate the code
                      f"[{s}]({link.format(s=s)}{label}.md) ({code_note({r.git_sha for r in ran[s][label]}, h.code)})"
                      for s in scales if label in ran.get(s, {})) or "—"}
                 for label, h in harnesses.items()]))]
    for scale in (s for s in scales if s in verdicts):
        v = verdicts[scale]
        lines += ["", f"## Claims at scale `{scale}`", "", f"Rule: {SPREAD_RULE}.", "", _md(pd.DataFrame({
            "claim": v.claim_id + ": " + v.claim, "harness: metric": v.harness + ": " + v.metric,
            "variant": v.variant, "verdict": "**" + v.verdict + "**", "treatment": v.treatment,
            "baseline": v.baseline, "detail": v.detail}))]
    if verdicts and all(v.empty for v in verdicts.values()):   # every claim gives a row: no claims
        lines += ["", "(reference/claims.csv is missing: no verdicts)"]
    return atomic.write_text(path, "\n".join(lines + [""]))
