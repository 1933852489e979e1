"""Results CSVs -> Markdown tables beside the paper's numbers, claim verdicts, REPORT.md.

Harnesses return rows; only this module formats them. Everything is written atomically.
"""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Iterable, Optional

from bench import atomic
from bench.reference import Claim, RefRow, load_claims, load_reference
from bench.registry import SCALES, VARIANTS, load_all
from bench.rows import Row, read_csv, write_csv

SEED_SETTING = re.compile(r"^seed=\d+$")


def write_harness_rows(out: Path, scale: str, label: str, rows: list[Row]) -> Path:
    return write_csv(Path(out) / scale / f"{label}.csv", rows)


# ------------------------------------------------------------------------------- aggregation

def aggregate(rows: Iterable[Row]) -> "OrderedDict[tuple, list[Row]]":
    """Group rows that differ only by a `seed=N` setting: (method, variant, setting, metric)."""
    groups: "OrderedDict[tuple, list[Row]]" = OrderedDict()
    for r in rows:
        setting = "" if SEED_SETTING.match(r.setting) else r.setting
        groups.setdefault((r.method, r.variant, setting, r.metric), []).append(r)
    return groups


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return ""
    if math.isnan(v):
        return "undefined (NaN)"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3e}"
    return f"{v:.4g}"


def _measured(rs: list[Row]) -> tuple[float, str]:
    vals = [r.value for r in rs]
    if any(math.isnan(v) for v in vals):
        return math.nan, f"undefined (NaN in {sum(math.isnan(v) for v in vals)}/{len(vals)} rows)"
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return mean, _fmt(mean)
    return mean, f"{_fmt(mean)} ± {_fmt(statistics.stdev(vals))} ({len(vals)} seeds)"


def harness_markdown(label: str, scale: str, rows: list[Row], ref: dict[str, RefRow]) -> str:
    h = load_all().get(label)
    lines = [f"# {label} — scale `{scale}`", ""]
    if h is not None:
        lines += [h.reproduces, ""]
    if rows:
        first = rows[0]
        shas = sorted({r.git_sha for r in rows})
        lines += [f"- dataset: {first.dataset}", f"- device: {first.device}",
                  f"- code: git {', '.join(shas)}", ""]
    variants = sorted({r.variant for r in rows})
    if variants:
        lines.append("Variants:")
        for v in variants:
            lines.append(f"- `{v}`: {VARIANTS.get(v, '(no description registered)')}")
        lines.append("")
    lines += ["| method | variant | setting | metric | measured | paper | measured/paper | NFE | n | seeds |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for (method, variant, setting, metric), rs in aggregate(rows).items():
        mean, shown = _measured(rs)
        paper = ref.get(rs[0].paper_row) if rs[0].paper_row else None
        pv = paper.number if paper else None
        ratio = _fmt(mean / pv) if pv not in (None, 0) else ""
        seeds = "; ".join(dict.fromkeys(r.seeds for r in rs))
        nfe = ", ".join(dict.fromkeys(r.nfe for r in rs if r.nfe))
        lines.append(f"| {method} | {variant} | {setting} | {metric} | {shown} | {_fmt(pv) if pv is not None else ''} "
                     f"| {ratio} | {nfe} | {rs[0].n_samples or ''} | {seeds} |")
    lines.append("")
    notes = [ref[r.paper_row] for r in rows if r.paper_row in ref]
    if notes:
        lines += ["Paper rows compared:", ""]
        for p in dict.fromkeys(notes):
            extra = f" — {p.note}" if p.note else ""
            lines.append(f"- `{p.ref_id}` ({p.source}): {p.method} {p.setting} {p.metric} = {p.value}{extra}")
        lines.append("")
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


def _key(r: Row) -> str:
    return "" if SEED_SETTING.match(r.setting) else r.setting


def evaluate_claim(c: Claim, rows: Optional[list[Row]]) -> list[dict]:
    """One verdict per treatment variant: held / not held / not run, with the numbers."""
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
            tb = defaultdict(list)
            bb = defaultdict(list)
            for r in trs:
                tb[_key(r)].append(r.value)
            for r in baseline:
                bb[_key(r)].append(r.value)
            shared = [k for k in tb if k in bb]
            if not shared:
                out.append({**v, "verdict": "not run", "detail": "treatment and baseline share no setting"})
                continue
            fails = [k for k in shared if not better(statistics.fmean(tb[k]), statistics.fmean(bb[k]))]
            detail = f"{len(shared) - len(fails)}/{len(shared)} settings {c.relation}"
            if fails:
                detail += "; fails at " + ", ".join(
                    f"{k} ({_fmt(statistics.fmean(tb[k]))} vs {_fmt(statistics.fmean(bb[k]))})" for k in fails[:6])
                if len(fails) > 6:
                    detail += f", … ({len(fails)} in all)"
            out.append({**v, "verdict": "not held" if fails else "held",
                        "treatment": _fmt(statistics.fmean(r.value for r in trs)),
                        "baseline": _fmt(statistics.fmean(r.value for r in baseline)), "detail": detail})
        else:
            tv, bv = [r.value for r in trs], [r.value for r in baseline]
            tm, bm = statistics.fmean(tv), statistics.fmean(bv)
            detail = f"mean {_fmt(tm)} (n={len(tv)}) vs {_fmt(bm)} (n={len(bv)}), difference {_fmt(tm - bm)}"
            if len(tv) > 1 and len(bv) > 1:
                se = math.sqrt(statistics.variance(tv) / len(tv) + statistics.variance(bv) / len(bv))
                detail += f" ± {_fmt(se)} (1 s.e. over seeds)"
            out.append({**v, "verdict": "held" if better(tm, bm) else "not held",
                        "treatment": _fmt(tm), "baseline": _fmt(bm), "detail": detail})
    return out


def _verdicts_csv(verdicts: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=VERDICT_FIELDS, lineterminator="\n", restval="")
    w.writeheader()
    for v in verdicts:
        w.writerow(v)
    return buf.getvalue()


# ------------------------------------------------------------------------------- REPORT.md

def render(out: Path) -> Path:
    """Rebuild every <scale>/<harness>.md, <scale>/claims.csv and REPORT.md from the CSVs."""
    out = Path(out)
    harnesses = load_all()
    ref = load_reference()
    claims = load_claims()
    ran: dict[str, dict[str, list[Row]]] = {}
    for scale in SCALES:
        d = out / scale
        if not d.is_dir():
            continue
        for csv_path in sorted(d.glob("*.csv")):
            if csv_path.stem in harnesses:
                rows = read_csv(csv_path)
                ran.setdefault(scale, {})[csv_path.stem] = rows
                atomic.write_text(csv_path.with_suffix(".md"), harness_markdown(csv_path.stem, scale, rows, ref))
    lines = ["# DisCo-Bench report", "",
             "Generated by `python -m bench report` from the CSVs under this folder. Each number comes "
             "from a run of the code at the git commit named in its CSV row; the paper's numbers come "
             "from `reference/`.", "", "## Harnesses", "",
             "| harness | reproduces | status | results |", "|---|---|---|---|"]
    for label, h in harnesses.items():
        status = "built" if h.built else f"not built yet ({h.issue})"
        links = ", ".join(f"[{s}]({s}/{label}.md)" for s in SCALES if label in ran.get(s, {}))
        lines.append(f"| `{label}` | {h.reproduces} | {status} | {links or '—'} |")
    for scale in SCALES:
        if scale not in ran:
            continue
        verdicts = [v for c in claims for v in evaluate_claim(c, ran[scale].get(c.harness))]
        atomic.write_text(out / scale / "claims.csv", _verdicts_csv(verdicts))
        lines += ["", f"## Claims at scale `{scale}`", "",
                  "| claim | harness: metric | variant | verdict | treatment | baseline | detail |",
                  "|---|---|---|---|---|---|---|"]
        for v in verdicts:
            lines.append(f"| {v['claim_id']}: {v['claim']} | {v['harness']}: {v['metric']} | {v.get('variant', '')} | "
                         f"**{v['verdict']}** | {v.get('treatment', '')} | {v.get('baseline', '')} | {v['detail']} |")
    if not claims:
        lines += ["", "(reference/claims.csv is missing: no verdicts)"]
    lines.append("")
    return atomic.write_text(out / "REPORT.md", "\n".join(lines))
