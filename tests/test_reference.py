"""reference/ holds the paper's numbers as data (see reference/SCHEMA.md).

(a) every CSV parses with exactly the schema's columns, ref_ids are unique and well-formed,
    values are numeric where the metric is numeric;
(b) every number in the body of shared/paper/TABLES.md (tables, bullet lists, notes; headings
    are labels and skipped) is present in some reference row's `value` or `nfe`, apart from an
    explicit, narrow list of label/identifier numbers; each paper table is also checked row by row;
(c) claims.csv covers claims 1..9 with well-formed checks;
(d) each row is pinned to its meaning: its `quote`, filled with its own value/nfe, occurs exactly
    once in TABLES.md; `origin=paper` numbers occur in the paper's text dump; `derived` numbers
    are recomputed from the rows they come from; `external` rows cite their source. Swapping two
    rows' numbers is caught (test_swapped_values_are_caught).

Stdlib + pytest only: no project imports.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REF = REPO / "reference"
TABLES_MD = REPO.parent / "shared" / "paper" / "TABLES.md"
PAPER_TXT = REPO.parent / "shared" / "paper" / "disco-diff-icml2024.txt"

TABLE_COLUMNS = ["ref_id", "table", "group", "method", "setting", "metric", "value", "nfe", "ours",
                 "source", "note", "origin", "quote"]
ORIGINS = {"paper", "derived", "external"}
CLAIM_COLUMNS = ["claim_id", "claim", "harness", "metric", "relation", "treatment", "baseline", "threshold",
                 "scope", "note", "kind", "select_by"]
KINDS = {"empirical", "structural"}
EXPECTED_FILES = {"table1.csv", "table2.csv", "table3.csv", "table4.csv", "table5.csv", "toy2d.csv",
                  "timing.csv", "architecture.csv", "claims.csv"}
# ref_id prefix per file: ids stay stable and say where they live
REF_PREFIX = {"table1.csv": "table1.", "table2.csv": "table2.", "table3.csv": "table3.",
              "table4.csv": "table4.", "table5.csv": "table5.", "toy2d.csv": "toy2d.",
              "timing.csv": "timing.", "architecture.csv": "arch."}
REF_ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
NON_NUMERIC_METRICS = {"feature_maps", "attention_resolutions", "encoder_patch", "mode_means"}
OURS_VALUES = {"", "yes", "baseline"}

RELATIONS = {"lower", "higher", "below", "above", "qualitative"}
SCOPES = {"every_setting", "mean"}
HARNESSES = {"table1", "table2", "table3", "table4", "figure3", "figure4", "figure6", "figure7", "figure8", "figure10",
             "w2", "timing"}

# A number: optional thousands groups, optional decimals, optional exponent ("1e-3"). Not the
# tail of another number ("2.36" yields 2.36 only). Signs are ignored ("(-3,0)" yields 3, 0).
NUM_RE = re.compile(r"(?<!\d)(?<!\d\.)\d+(?:,\d{3})*(?:\.\d+)?(?:[eE]-?\d+)?")

# Numbers in TABLES.md that are labels or identifiers, not data. Each pattern is removed from a
# line before numbers are extracted. Keep this list narrow: anything not matched here must be
# found in reference/ (test_every_paper_number_is_in_reference).
LABEL_PATTERNS = [
    (r"`disco-diff-icml2024\.txt`", "file name of the text dump (year in the name)"),
    (r"\bTables? \d+(?:, \d+)*", "table references: 'Table 2', 'Tables 1, 2'"),
    (r"\bFig\. \d+", "figure references: 'Fig. 13(b)', 'Fig. 4 left'"),
    (r"\bfigures 3 and 4\b", "figure references in prose"),
    (r"\bSec\. \d+\.\d+", "section references: 'Sec. 4.1'"),
    (r"\bApp\. [A-G](?:\.\d+)?", "appendix references: 'App. D.1', 'App. F.3'"),
    (r"\bImageNet-(?:64|128)\b", "dataset names"),
    (r"\((?:64|128)px\)", "resolution labels after patch sizes: '8x8 (64px)'"),
    (r"\bCDM \(32,64,128\)", "method name of the cascade"),
    (r"\bWasserstein-2\b", "metric name"),
    (r"\bW2\b", "metric name"),
    (r"\b2D\b", "'2D toy', '2D mixture' (dimension in a name)"),
    (r"\bKLD weight (?:0\.1|1)\b", "continuous-latent method names; checked in test_table3_row_by_row"),
    (r"\bA100\b", "GPU model name"),
    (r"\b[Tt]op-1\b", "'top-1' prediction (metric name)"),
    (r"\bcfg=\d\b", "guidance settings used as row labels: 'cfg=0'"),
    (r"\bw=1\b", "App. B's symbol w=1 (same label as cfg=1)"),
    (r"\(1-w\)", "formula D~ = w D(..) + (1-w) D(..)"),
    (r"\(2N-1\)", "formula NFE = 2N-1"),
    (r"\bt\^2", "formula exponent in G(x,t,z)"),
    (r"\bsigma_1\^2", "formula symbol in G(x,t,z)"),
    (r"_F\^2", "squared Frobenius norm ||dG/dx||_F^2"),
    (r"^\d\. ", "claims list numbering 1.-9."),
    (r"says \"1000\"", "App. D's garbled codebook size; kept in a note, see test_garbled_codebook_note"),
]


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def numbers_in(text: str) -> list[float]:
    return [_num(m.group(0)) for m in NUM_RE.finditer(text)]


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def table_files() -> list[Path]:
    return sorted(p for p in REF.glob("*.csv") if p.name != "claims.csv")


def all_table_rows() -> list[dict]:
    out = []
    for p in table_files():
        for r in read_rows(p)[1]:
            out.append(dict(r, _file=p.name))
    return out


def reference_numbers() -> set[float]:
    pool: set[float] = set()
    for r in all_table_rows():
        pool.update(numbers_in(r["value"]))
        pool.update(numbers_in(r["nfe"]))
    return pool


def tables_md() -> str:
    if not TABLES_MD.is_file():
        pytest.skip(f"paper transcription not found at {TABLES_MD} (shared/ is not checked out here)")
    return TABLES_MD.read_text(encoding="utf-8")


def paper_txt() -> str:
    if not PAPER_TXT.is_file():
        pytest.skip(f"paper text dump not found at {PAPER_TXT} (shared/ is not checked out here)")
    return PAPER_TXT.read_text(encoding="utf-8")


def body_lines(md: str) -> list[str]:
    """Every non-heading line with content: table rows, bullets and their continuation lines, notes."""
    return [ln for ln in md.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def strip_labels(line: str) -> str:
    for pat, _why in LABEL_PATTERNS:
        line = re.sub(pat, " ", line)
    return line


def md_table(md: str, heading_prefix: str) -> list[dict]:
    """The markdown table under the first heading starting with heading_prefix, as dicts."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(heading_prefix))
    rows: list[list[str]] = []
    for ln in lines[start + 1:]:
        if ln.startswith("#"):
            break
        if ln.startswith("|"):
            rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
        elif rows:
            break
    header, body = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
    return [dict(zip(header, r)) for r in body]


def ours_of(cell: str) -> str:
    return {"": "", "yes": "yes", "baseline to train": "baseline"}[cell]


# ---------------------------------------------------------------- (a) files and columns

def test_expected_files_present():
    present = {p.name for p in REF.glob("*.csv")}
    assert EXPECTED_FILES <= present, f"missing: {sorted(EXPECTED_FILES - present)}"


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES - {"claims.csv"}))
def test_table_csv_schema(name):
    cols, rows = read_rows(REF / name)
    assert cols == TABLE_COLUMNS, f"{name}: columns {cols}"
    assert rows, f"{name} is empty"
    for r in rows:
        rid = r["ref_id"]
        assert REF_ID_RE.match(rid), f"{name}: bad ref_id {rid!r}"
        assert rid.startswith(REF_PREFIX[name]), f"{name}: ref_id {rid!r} lacks prefix {REF_PREFIX[name]!r}"
        assert r["table"] and r["metric"] and r["source"], f"{name}: {rid} lacks table/metric/source"
        assert r["value"] != "", f"{name}: {rid} has no value"
        if r["metric"] not in NON_NUMERIC_METRICS:
            float(r["value"])  # raises if not numeric
        if r["nfe"]:
            assert float(r["nfe"]) == int(float(r["nfe"])), f"{name}: {rid} nfe {r['nfe']!r}"
        assert r["ours"] in OURS_VALUES, f"{name}: {rid} ours={r['ours']!r}"
        assert None not in r, f"{name}: {rid} has extra cells"


def test_every_csv_parses_with_schema_columns():
    for p in REF.glob("*.csv"):
        cols, rows = read_rows(p)
        want = CLAIM_COLUMNS if p.name == "claims.csv" else TABLE_COLUMNS
        assert cols == want, f"{p.name}: columns {cols}"
        for r in rows:
            assert None not in r and all(v is not None for v in r.values()), f"{p.name}: ragged row {r}"


def test_ref_ids_unique_across_files():
    ids = Counter(r["ref_id"] for r in all_table_rows())
    dup = [k for k, n in ids.items() if n > 1]
    assert not dup, f"duplicate ref_ids: {dup}"


# ---------------------------------------------------------------- (b) the paper's numbers

def test_label_patterns_are_narrow_and_used():
    text = "\n".join(body_lines(tables_md()))
    for pat, why in LABEL_PATTERNS:
        assert re.search(pat, text, flags=re.M), f"label pattern {pat!r} ({why}) matches nothing: drop it"


def test_every_paper_number_is_in_reference():
    pool = reference_numbers()
    missing = []
    for ln in body_lines(tables_md()):
        for x in numbers_in(strip_labels(ln)):
            if x not in pool:
                missing.append((x, ln.strip()[:100]))
    assert not missing, "numbers of TABLES.md absent from reference/ value/nfe:\n" + "\n".join(
        f"  {x!r}  in: {ln}" for x, ln in missing)


def test_garbled_codebook_note():
    garbled = re.search(r'says "(\d+)"', tables_md()).group(1)
    rows = [r for r in all_table_rows() if f'"{garbled}"' in r["note"] and "garbled" in r["note"]]
    assert rows, f'the codebook-size row must keep the note on the garbled "{garbled}"'
    assert all(r["metric"] == "codebook_size" and r["value"] != garbled for r in rows), rows


def _fid_rows(table: str) -> list[dict]:
    return [r for r in read_rows(REF / f"{table}.csv")[1] if r["table"] == table and r["metric"] == "fid"]


@pytest.mark.parametrize("table,heading", [("table1", "## Table 1"), ("table2", "## Table 2")])
def test_fid_nfe_tables_row_by_row(table, heading):
    md = md_table(tables_md(), heading)
    want = Counter((_num(r["FID"]), _num(r["NFE"]), ours_of(r["ours?"])) for r in md)
    have = Counter((_num(r["value"]), _num(r["nfe"]), r["ours"]) for r in _fid_rows(table))
    assert want == have, f"{table}: paper-only {want - have}, csv-only {have - want}"


def test_table3_row_by_row():
    md = md_table(tables_md(), "## Table 3")
    want = Counter(_num(r["FID"]) for r in md)
    rows = _fid_rows("table3")
    assert Counter(_num(r["value"]) for r in rows) == want
    csv_methods = {r["method"] for r in rows}
    for r in md:
        name = re.sub(r", cfg=\d$", "", r["method"])
        assert name in csv_methods, f"Table 3 method {name!r} not in table3.csv"
    guide = "D(z) + cfg * (D(z) - D(null))"
    for r in rows:
        assert r["ours"] == ("yes" if r["method"].startswith("DisCo") else "baseline"), r["ref_id"]
        if "cfg=" in r["setting"]:
            assert guide in r["note"] and "App. B" in r["note"], f"{r['ref_id']}: guidance note missing"


def test_table4_row_by_row():
    md = md_table(tables_md(), "## Table 4")
    rows = read_rows(REF / "table4.csv")[1]
    by = {(r["method"], r["setting"], r["metric"]): r for r in rows}
    for m in md:
        meth = m["method"]
        for setting, col in (("full test set", "full test set"), ("unseen proteins", "unseen proteins")):
            r = by[(meth, setting, "top1_rmsd_lt2_pct")]
            assert _num(r["value"]) == _num(m[col]), (meth, setting)
            assert r["ours"] == ours_of(m["ours?"]), (meth, setting)
        rt = by[(meth, "", "runtime_s")]
        cell = m["runtime (s)"]
        assert _num(rt["value"]) == _num(cell.rstrip("*")), meth
        assert ("CPU" in rt["note"]) == cell.endswith("*"), f"{meth}: CPU note vs '*'"
    n = sum(1 for r in rows if r["metric"] in ("top1_rmsd_lt2_pct", "runtime_s"))
    assert n == 3 * len(md)


def test_table5_cell_by_cell():
    md = md_table(tables_md(), "## Table 5")
    rows = read_rows(REF / "table5.csv")[1]
    by = {(r["setting"], r["metric"]): r["value"] for r in rows}
    cols = {"feature maps": "feature_maps", "attention resolutions": "attention_resolutions",
            "encoder patch size": "encoder_patch"}
    for m in md:
        for col, metric in cols.items():
            assert by[(m["dataset"], metric)] == m[col], (m["dataset"], metric)
    assert len(rows) == len(md) * len(cols)


def test_toy2d_reading_recorded():
    rows = {r["ref_id"]: r for r in read_rows(REF / "toy2d.csv")[1]}
    assert {"toy2d.w2.disco_diff", "toy2d.w2.dm"} <= set(rows)
    assert rows["toy2d.w2.disco_diff"]["ours"] == "yes" and rows["toy2d.w2.dm"]["ours"] == "baseline"
    assert "standard deviation" in rows["toy2d.data.sigma"]["note"]


# ---------------------------------------------------------------- (d) each number pinned to its meaning
#
# The checks are functions over a list of row dicts (as read from reference/*.csv) that return
# problems as strings naming the ref_id, so that test_swapped_values_are_caught can run them on
# mutated rows.

# Rows whose value TABLES.md does not print as digits: their quote is empty, for this reason.
EMPTY_QUOTE = {
    "arch.group_hier.n_groups": "TABLES.md (and the paper) write the number as a word: 'three groups of 10 latents'",
    "toy2d.data.mode_means": "a normalised list of the 8 means; TABLES.md prints them in prose as "
                             "(3,0), ..., (+-3/sqrt2, +-3/sqrt2)",
}

# Arithmetic the reference rows must satisfy: (row, formula in words, function of a getter
# g(ref_id, column="value") -> float). The row's value must equal the result rounded to the
# row's printed precision. Every `derived` row must be the target of at least one entry; the
# others cross-check printed numbers against each other.
ARITHMETIC = [
    ("timing.overhead_pct", "timing.ar_prior.seconds / timing.dm.seconds * 100",
     lambda g: g("timing.ar_prior.seconds") / g("timing.dm.seconds") * 100),
    ("table1.cond_ode.heun_steps", "(NFE of table1.cond_ode.edm + 1) / 2 (Heun: NFE = 2N-1)",
     lambda g: (g("table1.cond_ode.edm", "nfe") + 1) / 2),
    ("table1.cond_ode.heun_steps", "(NFE of table1.cond_ode.pfgmpp + 1) / 2 (Heun: NFE = 2N-1)",
     lambda g: (g("table1.cond_ode.pfgmpp", "nfe") + 1) / 2),
    ("timing.dm.seconds_per_nfe", "timing.dm.seconds / its NFE",
     lambda g: g("timing.dm.seconds") / g("timing.dm.seconds", "nfe")),
    ("toy2d.data.n_points", "n_modes * points_per_mode",
     lambda g: g("toy2d.data.n_modes") * g("toy2d.data.points_per_mode")),
    ("arch.group_hier.total_latents", "n_groups * latents_per_group",
     lambda g: g("arch.group_hier.n_groups") * g("arch.group_hier.latents_per_group")),
    ("arch.imagenet128.uvit.vit_cross_attention_blocks", "every third block of the ViT: vit_layers / 3",
     lambda g: g("arch.imagenet128.uvit.vit_layers") / 3),
]

# an external row's source names a paper ("Corso et al., 2023") or public code (a GitHub address)
CITATION_RE = re.compile(r"\b[A-Z][A-Za-z-]+ et al\.,? \(?(?:19|20)\d\d|github\.com/")
PLACEHOLDERS = ("{value:,}", "{value}", "{nfe}")


def normalise_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def count_overlapping(needle: str, hay: str) -> int:
    return len(re.findall("(?=" + re.escape(needle) + ")", hay))


def fill_quote(quote: str, row: dict) -> str:
    """The row's quote with its own value/nfe put in ({value:,}: with thousands separators)."""
    q = normalise_ws(quote)
    if "{value:,}" in q:
        q = q.replace("{value:,}", f"{int(_num(row['value'])):,}")
    return q.replace("{value}", row["value"]).replace("{nfe}", row["nfe"])


def quote_problems(rows: list[dict], md: str) -> list[str]:
    """(a) each row's quote, filled with its own value/nfe, occurs exactly once in TABLES.md."""
    text = normalise_ws(md)
    out = []
    for r in rows:
        rid, q = r["ref_id"], r["quote"]
        if not q:
            if rid not in EMPTY_QUOTE:
                out.append(f"{rid}: empty quote (allowed only for EMPTY_QUOTE rows)")
            continue
        if rid in EMPTY_QUOTE:
            out.append(f"{rid}: listed in EMPTY_QUOTE but has a quote")
        if "{value}" not in q and "{value:,}" not in q:
            out.append(f"{rid}: quote {q!r} has no {{value}}")
        if bool(r["nfe"]) != ("{nfe}" in q):
            out.append(f"{rid}: quote must hold {{nfe}} exactly when the row has an NFE ({r['nfe']!r})")
        for ph in PLACEHOLDERS:
            for m in re.finditer(re.escape(ph), q):
                left, right = q[:m.start()], q[m.end():]
                if not left or not right or re.search(r"\d\.?$", left) or re.match(r"\.?\d", right):
                    out.append(f"{rid}: {ph} in {q!r} needs non-digit context on both sides")
        try:
            filled = fill_quote(q, r)
        except ValueError:
            out.append(f"{rid}: value {r['value']!r} does not fit {q!r}")
            continue
        n = count_overlapping(filled, text)
        if n != 1:
            out.append(f"{rid}: quote {filled!r} occurs {n} times in TABLES.md (want exactly 1)")
    return out


def in_paper_dump(token: str, dump: str) -> bool:
    """token printed in the dump as a number: whitespace inside it is ignored (the dump splits and
    glues words), but its neighbours must not continue it ('2.36' is not found in '12.36' or
    '2.361'; whitespace counts as a separator, so table cells '9.20 1' still yield 9.20)."""
    body = r"\s*".join(re.escape(c) for c in re.sub(r"\s+", "", token))
    return re.search(r"(?<!\d)(?<!\d\.)" + body + r"(?!\d)(?!\.\d)", dump) is not None


def origin_problems(rows: list[dict], dump: str) -> list[str]:
    """(b)-(d) origin is paper/derived/external; paper numbers are in the dump; derived rows
    state their formula and are recomputed (ARITHMETIC); external rows cite their source."""
    targets = {t for t, _f, _fn in ARITHMETIC}
    out = []
    for r in rows:
        rid, origin = r["ref_id"], r["origin"]
        if origin not in ORIGINS:
            out.append(f"{rid}: origin {origin!r} not in {sorted(ORIGINS)}")
        elif origin == "paper":
            for col in ("value", "nfe"):
                for m in NUM_RE.finditer(r[col]):
                    if not in_paper_dump(m.group(0), dump):
                        out.append(f"{rid}: origin=paper but {col} {m.group(0)!r} is not in the paper's text dump")
        elif origin == "derived":
            if rid not in targets:
                out.append(f"{rid}: origin=derived but no ARITHMETIC entry recomputes it")
            if not re.search(r"derived: [^;]*=", r["note"] + " " + r["source"]):
                out.append(f"{rid}: origin=derived but note/source states no formula ('derived: ... = ...')")
        elif origin == "external":
            if not CITATION_RE.search(r["source"]):
                out.append(f"{rid}: origin=external but source {r['source']!r} names no paper or code")
    return out


def arithmetic_problems(rows: list[dict]) -> list[str]:
    """(c) the ARITHMETIC relations hold to each target's printed precision."""
    by = {r["ref_id"]: r for r in rows}

    def g(rid: str, col: str = "value") -> float:
        return _num(by[rid][col])

    out = []
    for target, formula, fn in ARITHMETIC:
        try:
            want, printed = fn(g), by[target]["value"]
            have = _num(printed)
        except (KeyError, ValueError, ZeroDivisionError) as e:
            out.append(f"{target}: cannot evaluate {formula}: {e!r}")
            continue
        decimals = len(printed.split(".")[1]) if "." in printed else 0
        if abs(round(want, decimals) - have) > 1e-9:
            out.append(f"{target}: {printed} != {formula} = {want:.6g}")
    return out


def reference_problems(rows: list[dict], md: str, dump: str) -> list[str]:
    return quote_problems(rows, md) + origin_problems(rows, dump) + arithmetic_problems(rows)


def test_quotes_pin_each_value_once():
    problems = quote_problems(all_table_rows(), tables_md())
    assert not problems, "\n".join(problems)


def test_empty_quote_rows_exist_and_say_why():
    rows = {r["ref_id"]: r for r in all_table_rows()}
    for rid, why in EMPTY_QUOTE.items():
        assert rid in rows and why, rid


def test_origins_paper_derived_external():
    problems = origin_problems(all_table_rows(), paper_txt())
    assert not problems, "\n".join(problems)


def test_origin_paper_dump_match_is_strict():
    dump = "FID 12.36 at 2.361 and cells 9.20 1 and takes0.44seconds and 0.4 4"
    assert not in_paper_dump("2.36", dump)
    assert in_paper_dump("9.20", dump) and in_paper_dump("1", dump)
    assert in_paper_dump("0.44", dump)
    assert not in_paper_dump("0.56", dump)


def test_arithmetic_and_derived_rows_recomputed():
    rows = all_table_rows()
    problems = arithmetic_problems(rows)
    assert not problems, "\n".join(problems)
    derived = {r["ref_id"] for r in rows if r["origin"] == "derived"}
    assert {"timing.overhead_pct", "table1.cond_ode.heun_steps"} <= derived
    assert {t for t, _f, _fn in ARITHMETIC} <= {r["ref_id"] for r in rows}


def test_derived_and_external_rows_named():
    """The rows the paper does not print are marked (the audit's list), with their sources."""
    by = {r["ref_id"]: r for r in all_table_rows()}
    assert by["timing.overhead_pct"]["origin"] == "derived"
    assert "0.44 / 78 * 100" in by["timing.overhead_pct"]["note"]
    assert by["table1.cond_ode.heun_steps"]["origin"] == "derived"
    assert "Karras et al., 2022" in by["table1.cond_ode.heun_steps"]["source"]
    for rid in ("table4.protocol.n_test_complexes", "table4.protocol.n_unseen_complexes",
                "table4.protocol.diffdock_runs"):
        assert by[rid]["origin"] == "external" and "Corso et al., 2023" in by[rid]["source"], rid
    # App. E.5 prints the split year ("complexes before2019fortrainingandvalidation")
    assert by["table4.protocol.split_year"]["origin"] == "paper"


def _swapped(rows: list[dict], a: str, b: str, col: str) -> list[dict]:
    out = [dict(r) for r in rows]
    ra = next(r for r in out if r["ref_id"] == a)
    rb = next(r for r in out if r["ref_id"] == b)
    assert ra[col] != rb[col], f"{a} and {b} share {col} {ra[col]!r}: swapping them proves nothing"
    ra[col], rb[col] = rb[col], ra[col]
    return out


@pytest.mark.parametrize("a,b,col", [
    ("toy2d.w2.disco_diff", "toy2d.w2.dm", "value"),
    ("timing.ar_prior.seconds", "timing.dm.seconds", "value"),
    ("table1.uncond.edm", "table1.uncond.disco_diff", "value"),
    ("table1.cond_ode.edm", "table1.cond_ode.disco_diff", "value"),
    ("table3.generative.disco_diff.cfg0", "table3.generative.disco_diff.cfg2", "value"),
    ("table4.diffdock_s.unseen_proteins", "table4.disco_diffdock_s.unseen_proteins", "value"),
    ("table2.vdmpp.ode", "table2.disco_diff.ode", "nfe"),
])
def test_swapped_values_are_caught(a, b, col):
    rows, md, dump = all_table_rows(), tables_md(), paper_txt()
    assert reference_problems(rows, md, dump) == []
    problems = reference_problems(_swapped(rows, a, b, col), md, dump)
    for rid in (a, b):
        assert any(p.startswith(f"{rid}: quote ") for p in problems), f"swap {a} <-> {b} ({col}) not caught at {rid}"


@pytest.mark.parametrize("rid", ["timing.overhead_pct", "table4.protocol.n_test_complexes",
                                 "table4.protocol.n_unseen_complexes"])
def test_relabelling_unprinted_number_as_paper_is_caught(rid):
    rows = [dict(r, origin="paper") if r["ref_id"] == rid else r for r in all_table_rows()]
    assert any(p.startswith(f"{rid}: origin=paper") for p in origin_problems(rows, paper_txt()))


def test_swapped_timing_breaks_arithmetic():
    rows = _swapped(all_table_rows(), "timing.ar_prior.seconds", "timing.dm.seconds", "value")
    assert any(p.startswith("timing.overhead_pct:") for p in arithmetic_problems(rows))


# ---------------------------------------------------------------- (c) claims

def _claims() -> list[dict]:
    return read_rows(REF / "claims.csv")[1]


def test_claims_well_formed():
    claims = _claims()
    ids = [c["claim_id"] for c in claims]
    assert len(ids) == len(set(ids)), "duplicate claim_id"
    methods = {r["method"] for r in all_table_rows()}
    for c in claims:
        cid, rel = c["claim_id"], c["relation"]
        assert re.fullmatch(r"[1-9][a-z]", cid), f"bad claim_id {cid!r}"
        assert c["claim"].strip(), cid
        assert rel in RELATIONS, f"{cid}: relation {rel!r}"
        assert c["harness"] in HARNESSES, f"{cid}: harness {c['harness']!r}"
        assert c["treatment"], f"{cid}: no treatment"
        if rel in ("lower", "higher"):
            assert c["baseline"], f"{cid}: {rel} needs a baseline"
            assert c["threshold"] == "", f"{cid}: {rel} takes no threshold"
        elif rel in ("below", "above"):
            float(c["threshold"])
            assert c["baseline"] == "", f"{cid}: {rel} takes no baseline"
        else:
            assert c["baseline"] == "" and c["threshold"] == "", cid
        if rel != "qualitative":
            assert c["metric"], f"{cid}: no metric"
            assert c["scope"] in SCOPES, f"{cid}: scope {c['scope']!r}"
        assert c["kind"] in KINDS, f"{cid}: kind {c['kind']!r}"
        assert (c["kind"] == "structural") == c["note"].startswith("STRUCTURAL:"), f"{cid}: a structural check says why"
        assert not c["select_by"] or c["baseline"], f"{cid}: select_by chooses among baseline variants"
        for sel in (c["treatment"], c["baseline"]):
            if sel:
                assert sel.count("|") <= 1, f"{cid}: selector {sel!r}"
                assert sel.split("|")[0] in methods, f"{cid}: method of {sel!r} names no reference row"


def test_claims_cover_1_to_9():
    nums = {int(c["claim_id"][0]) for c in _claims()}
    assert nums == set(range(1, 10)), f"claims covered: {sorted(nums)}"
    md = tables_md()
    listed = set(int(m) for m in re.findall(r"^(\d)\. ", md.split("## The paper's claims")[1], flags=re.M))
    assert listed == nums


def test_claim_checks_named_in_brief():
    by = {c["claim_id"]: c for c in _claims()}
    assert (by["2a"]["harness"], by["2a"]["metric"], by["2a"]["scope"]) == ("w2", "w2", "mean")
    assert (by["2b"]["metric"], by["2b"]["scope"]) == ("curvature", "every_setting")
    assert (by["2c"]["metric"], by["2c"]["scope"]) == ("jacobian_norm", "every_setting")
    assert by["7a"]["relation"] == "below" and by["7a"]["metric"] == "overhead_pct"
    assert (by["9a"]["harness"], by["9a"]["metric"], by["9a"]["relation"]) == ("figure6", "layout_share", "higher")


def test_audited_checks_are_labelled():
    """The audit's decisions: 2b and 2d hold by construction (structural); the 2D checks meet the best DM by
    validation W2; the loss-versus-sigma checks select the paper's panel, not a dataset name."""
    by = {c["claim_id"]: c for c in _claims()}
    assert {k for k, c in by.items() if c["kind"] == "structural"} == {"2b", "2d"}
    assert all(by[k]["select_by"] == "validation_w2" for k in ("2a", "2b", "2c", "2d"))
    assert by["3b"]["treatment"].endswith("|Fig. 10(a)") and by["3c"]["treatment"].endswith("|Fig. 10(b)")
