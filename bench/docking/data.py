"""PDBBind complexes for DiffDock-S (Table 4): loader, time-split lists, offline examples, ligand featurisation.

Facts taken from gcorso/DiffDock (datasets/pdbbind.py, datasets/process_mols.py, utils/torsion.py):

* Layout of the processed PDBBind: ``<root>/<id>/<id>_protein_processed.pdb`` and ``<id>_ligand.sdf``; the
  ligand is read with RDKit (sanitised) from the ``.sdf`` and, when that fails, from ``<id>_ligand.mol2``.
* The receptor is one node per residue at its C-alpha; a residue counts when it has N, CA and C atoms.
* Ligand atom features (``lig_atom_featurizer``): 16 categorical columns, listed in ``LIGAND_FEATURES``.
* Rotatable bonds (``get_transformation_mask``): a bond whose removal disconnects the molecular graph and
  whose smaller side has more than one atom. Bond order plays no part: an amide C-N or a C=C linking two
  fragments counts. Equivalently: a non-ring bond whose two atoms both have heavy-atom degree > 1.
* Conformers (``generate_conformer``): ETKDGv2 on the molecule with hydrogens, up to three tries, then
  random starting coordinates and an MMFF optimisation.

RDKit is an optional dependency (``pip install -e ".[docking]"``): this module imports without it and
every function that needs it raises ``MissingDockingDependency`` with that instruction.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import re
import warnings
import zipfile
import zlib
from collections import deque
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

INSTALL_HINT = 'pip install -e ".[docking]"'


class DockingDataError(Exception):
    """A complex, split or ligand that cannot be loaded; the message names the file and the reason."""


class MissingDockingDependency(ImportError):
    """RDKit (or another docking extra) is not installed."""


def import_rdkit():
    """(Chem, AllChem) from RDKit, imported on first use."""
    try:
        from rdkit import Chem
        from rdkit.Chem import AllChem
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching sys.modules
        raise MissingDockingDependency(
            f"bench.docking.data needs RDKit for molecules; install the docking extra: {INSTALL_HINT}"
        ) from e
    return Chem, AllChem


class _quiet_rdkit:
    """Silence RDKit's C++ log (parse warnings) inside a block; errors still surface as exceptions."""

    def __enter__(self):
        try:
            from rdkit import rdBase
            self._block = rdBase.BlockLogs()
        except (ImportError, AttributeError):
            self._block = None
        return self

    def __exit__(self, *exc):
        self._block = None
        return False


# ------------------------------------------------------------------------------------------ splits

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
# name -> expected number of ids (gcorso/DiffDock data/splits, see splits/README.md)
SPLITS = {
    "timesplit_test": 363,
    "timesplit_test_no_rec_overlap": 144,
    "timesplit_no_lig_overlap_train": 16379,
    "timesplit_no_lig_overlap_val": 968,
}
SPLIT_ALIASES = {
    "test": "timesplit_test",
    "unseen": "timesplit_test_no_rec_overlap",
    "test_no_rec_overlap": "timesplit_test_no_rec_overlap",
    "train": "timesplit_no_lig_overlap_train",
    "val": "timesplit_no_lig_overlap_val",
}
_PDB_ID = re.compile(r"^[0-9][a-z0-9]{3}$")


def load_split(name: str) -> list[str]:
    """PDB ids of a DiffDock time split, in the file's order (``test``/``unseen``/``train``/``val`` or full name)."""
    key = SPLIT_ALIASES.get(name, name)
    if key not in SPLITS:
        raise DockingDataError(f"unknown split {name!r}; known: {sorted(SPLITS)} and aliases {sorted(SPLIT_ALIASES)}")
    path = SPLITS_DIR / key
    if not path.is_file():
        raise DockingDataError(f"{path}: split file missing")
    ids: list[str] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _PDB_ID.match(line):
            raise DockingDataError(f"{path}:{lineno}: {line!r} is not a lowercase 4-character PDB id")
        ids.append(line)
    if len(set(ids)) != len(ids):
        raise DockingDataError(f"{path}: duplicate ids")
    if len(ids) != SPLITS[key]:
        raise DockingDataError(f"{path}: {len(ids)} ids, expected {SPLITS[key]} (truncated or edited file?)")
    return ids


# ----------------------------------------------------------------------------------------- protein

AMINO_ACIDS = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
               "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
UNKNOWN_RESIDUE = len(AMINO_ACIDS)  # 20
# Protonation/force-field variants of the standard residues (Amber, CHARMM) map to the parent residue.
RESIDUE_ALIASES = {"HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
                   "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS"}
_AA_INDEX = {name: i for i, name in enumerate(AMINO_ACIDS)}


def residue_index(resname: str) -> int:
    """Index of a residue name in ``AMINO_ACIDS`` (variants folded in), ``UNKNOWN_RESIDUE`` otherwise."""
    name = resname.strip().upper()
    return _AA_INDEX.get(RESIDUE_ALIASES.get(name, name), UNKNOWN_RESIDUE)


def _coords(line: str, where: str) -> tuple[float, float, float]:
    try:
        return float(line[30:38]), float(line[38:46]), float(line[46:54])
    except ValueError as e:
        raise DockingDataError(f"{where}: bad coordinates in {line.rstrip()!r}") from e


def _model_lines(path: Path) -> list[str]:
    """Coordinate-section lines of the first MODEL of a PDB/PDBQT file."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise DockingDataError(f"{path}: cannot read ({e.strerror or e})") from e
    lines = []
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        lines.append(line)
    return lines


def parse_protein(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C-alpha coordinates [R, 3] float32, residue types [R] int64 and chain ids [R] of a PDB/PDBQT file.

    ATOM records of the first model; the first alternate location of each atom; residues without all of
    N, CA and C are left out (as DiffDock does). HETATM records (ligands, waters, MSE) are not protein here.
    """
    path = Path(path)
    residues: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {}
    names: dict[tuple[str, str], str] = {}
    for lineno, line in enumerate(_model_lines(path), 1):
        if not line.startswith("ATOM  "):
            continue
        key = (line[21], line[22:27])  # chain, residue number + insertion code
        names.setdefault(key, line[17:20].strip())  # microheterogeneity: the first altloc's residue
        atom = line[12:16].strip()
        atoms = residues.setdefault(key, {})
        if atom not in atoms:  # first altloc wins
            atoms[atom] = _coords(line, f"{path}:{lineno}")
    kept = [(key, atoms) for key, atoms in residues.items() if {"N", "CA", "C"} <= atoms.keys()]
    if not kept:
        raise DockingDataError(f"{path}: no protein residue with N, CA and C in its ATOM records")
    ca = np.asarray([atoms["CA"] for _, atoms in kept], dtype=np.float32).reshape(-1, 3)
    types = np.asarray([residue_index(names[key]) for key, _ in kept], dtype=np.int64)
    chains = np.asarray([key[0] for key, _ in kept])
    return ca, types, chains


# ----------------------------------------------------------------------------------------- ligands

def _heavy_3d(mol, where: str):
    """Sanitised heavy-atom copy with a 3D conformer, or DockingDataError."""
    Chem, _ = import_rdkit()
    try:
        Chem.SanitizeMol(mol)
        mol = Chem.RemoveAllHs(mol, sanitize=True)
    except Exception as e:  # RDKit raises several exception types (MolSanitizeException, ValueError, ...)
        raise DockingDataError(f"{where}: RDKit cannot sanitise the ligand ({e})") from e
    if mol.GetNumAtoms() == 0:
        raise DockingDataError(f"{where}: ligand has no heavy atom")
    if mol.GetNumConformers() == 0:
        raise DockingDataError(f"{where}: ligand has no coordinates")
    pos = mol.GetConformer().GetPositions()
    if not np.isfinite(pos).all() or (mol.GetNumAtoms() > 3 and np.ptp(pos[:, 2]) == 0.0):
        raise DockingDataError(f"{where}: ligand coordinates are not 3D")
    return mol


def read_ligand(path: str | Path):
    """Heavy-atom RDKit molecule with its file coordinates, from the first record of an .sdf or a .mol2."""
    Chem, _ = import_rdkit()
    path = Path(path)
    if not path.is_file():
        raise DockingDataError(f"{path}: ligand file missing")
    suffix = path.suffix.lower()
    with _quiet_rdkit():
        if suffix == ".sdf":
            supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)
            mol = supplier[0] if len(supplier) > 0 else None
        elif suffix == ".mol2":
            mol = Chem.MolFromMol2File(str(path), sanitize=False, removeHs=False)
        else:
            raise DockingDataError(f"{path}: ligand format {suffix!r} not supported (.sdf or .mol2)")
        if mol is None:
            raise DockingDataError(f"{path}: RDKit cannot parse the ligand record")
        return _heavy_3d(mol, str(path))


def _positions(mol) -> np.ndarray:
    return np.asarray(mol.GetConformer().GetPositions(), dtype=np.float32).reshape(-1, 3)


@dataclasses.dataclass
class Complex:
    """One protein-ligand complex: residues at C-alpha and the crystal ligand (heavy atoms)."""

    name: str
    ca_coords: np.ndarray      # [R, 3] float32, C-alpha positions (Angstrom)
    residue_types: np.ndarray  # [R] int64, index into AMINO_ACIDS, UNKNOWN_RESIDUE (20) otherwise
    ligand: Any                # rdkit.Chem.Mol, heavy atoms only, conformer 0 = crystal pose
    ligand_coords: np.ndarray  # [N, 3] float32, crystal pose, atom order of `ligand`
    source: str                # where it came from (path, package)
    chain_ids: np.ndarray | None = None  # [R] chain identifier of each residue
    esm: np.ndarray | None = None        # [R, d] float32 per-residue ESM embeddings (attach_esm), or None

    def __post_init__(self):
        self.ca_coords = np.asarray(self.ca_coords, dtype=np.float32).reshape(-1, 3)
        self.residue_types = np.asarray(self.residue_types, dtype=np.int64).reshape(-1)
        self.ligand_coords = np.asarray(self.ligand_coords, dtype=np.float32).reshape(-1, 3)
        if len(self.ca_coords) != len(self.residue_types):
            raise DockingDataError(f"{self.name}: {len(self.ca_coords)} C-alphas but {len(self.residue_types)} residue types")
        if self.chain_ids is not None and len(self.chain_ids) != len(self.residue_types):
            raise DockingDataError(f"{self.name}: chain ids do not match the residues")
        if self.residue_types.size and (self.residue_types.min() < 0 or self.residue_types.max() > UNKNOWN_RESIDUE):
            raise DockingDataError(f"{self.name}: residue type outside 0..{UNKNOWN_RESIDUE}")
        n = self.ligand.GetNumAtoms()
        if len(self.ligand_coords) != n:
            raise DockingDataError(f"{self.name}: ligand has {n} atoms but {len(self.ligand_coords)} coordinates")
        if any(a.GetAtomicNum() == 1 for a in self.ligand.GetAtoms()):
            raise DockingDataError(f"{self.name}: ligand must hold heavy atoms only")
        if self.esm is not None:
            self.esm = self._checked_esm(self.esm)

    def _checked_esm(self, esm) -> np.ndarray:
        try:
            esm = np.asarray(esm, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise DockingDataError(f"{self.name}: ESM embeddings are not a numeric array ({e})") from e
        if esm.ndim != 2 or esm.shape[1] == 0:
            raise DockingDataError(f"{self.name}: ESM embeddings must be [residues, dim] with dim >= 1, "
                                   f"got shape {esm.shape}")
        if len(esm) != self.num_residues:
            raise DockingDataError(f"{self.name}: ESM embeddings for {len(esm)} residues, "
                                   f"but the complex has {self.num_residues} residues")
        bad = ~np.isfinite(esm).all(axis=1)
        if bad.any():
            raise DockingDataError(f"{self.name}: ESM embeddings hold NaN/inf in {int(bad.sum())} of "
                                   f"{len(esm)} residues (first: residue {int(np.argmax(bad))})")
        return esm

    @property
    def num_residues(self) -> int:
        return len(self.residue_types)

    @property
    def num_ligand_atoms(self) -> int:
        return len(self.ligand_coords)


def load_pdbbind_complex(root: str | Path, pdb_id: str) -> Complex:
    """A complex in DiffDock's processed PDBBind layout under ``root``; DockingDataError if anything is off."""
    folder = Path(root) / pdb_id
    if not folder.is_dir():
        raise DockingDataError(f"{folder}: complex directory not found (expected <root>/{pdb_id}/"
                               f"{pdb_id}_protein_processed.pdb and {pdb_id}_ligand.sdf)")
    candidates = [folder / f"{pdb_id}_protein_processed.pdb", folder / f"{pdb_id}_protein.pdb"]
    protein = next((p for p in candidates if p.is_file()), None)
    if protein is None:
        raise DockingDataError(f"{candidates[0]}: protein file missing (and no {candidates[1].name})")
    ca, types, chains = parse_protein(protein)

    reasons = []
    for suffix in (".sdf", ".mol2"):  # DiffDock read_mol: the .mol2 only when the .sdf cannot be used
        path = folder / f"{pdb_id}_ligand{suffix}"
        try:
            mol = read_ligand(path)
            break
        except DockingDataError as e:
            reasons.append(str(e))
    else:
        raise DockingDataError(f"{pdb_id}: no usable ligand: " + "; ".join(reasons))
    return Complex(name=pdb_id, ca_coords=ca, residue_types=types, ligand=mol, ligand_coords=_positions(mol),
                   source=f"pdbbind:{folder}", chain_ids=chains)


def crop_to_pocket(c: Complex, radius: float) -> Complex:
    """The complex with only the residues whose C-alpha lies within ``radius`` A of a crystal-ligand heavy
    atom (chain ids and ESM rows cropped alike): pocket docking, as in the smoke and small tiers. The crop is
    made from the crystal pose, so it gives away where the ligand is; blind docking (paper scale) keeps the
    whole protein. DockingDataError when no residue is that close."""
    if not radius > 0:
        raise ValueError(f"pocket radius must be > 0 A, got {radius}")
    d = np.linalg.norm(c.ca_coords[:, None, :] - c.ligand_coords[None, :, :], axis=-1)   # [R, N]
    keep = d.min(axis=1) < radius
    if not keep.any():
        raise DockingDataError(f"{c.name}: no C-alpha within {radius:g} A of the crystal ligand "
                               f"(closest {d.min():.1f} A)")
    return dataclasses.replace(
        c, ca_coords=c.ca_coords[keep], residue_types=c.residue_types[keep],
        chain_ids=None if c.chain_ids is None else c.chain_ids[keep],
        esm=None if c.esm is None else c.esm[keep])


# ---------------------------------------------------------------------------- ESM embeddings

# DiffDock (datasets/esm_embedding_preparation.py, pdbbind.py) keys per-chain ESM2 embeddings as
# "{pdb_id}_chain_{i}", i = chain order in the protein file, and sorts a complex's chains by i.


def _numpy_safe_globals():
    """Context that lets torch.load(weights_only=True) rebuild plain numpy arrays (torch >= 2.5)."""
    import torch
    safe = getattr(torch.serialization, "safe_globals", None)
    if safe is None:
        return contextlib.nullcontext()
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    if dtypes is not None:
        names = ("Float16DType", "Float32DType", "Float64DType")
        allowed += [getattr(dtypes, n) for n in names if hasattr(dtypes, n)]
    return safe(allowed)


def _to_numpy(value, where: str) -> np.ndarray:
    import torch
    if torch.is_tensor(value):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise DockingDataError(f"{where}: a {type(value).__name__}, expected a [residues, dim] tensor or array")


def load_esm_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """Per-residue ESM embeddings by name, from a file of one of two formats:

    * ``.pt`` / ``.pth``: ``torch.save`` of a dict ``name -> [R, d]`` tensor (or numpy array), read with
      ``torch.load(weights_only=True)`` (no arbitrary pickles). DiffDock's ``esm_embeddings_to_pt.py``
      output is of this kind, keyed per chain.
    * ``.npz``: ``np.savez`` with one ``[R, d]`` array per name (read with ``allow_pickle=False``).

    A name is a complex's name (PDB id) holding all its residues, or ``"{pdb_id}_chain_{i}"`` per chain as
    DiffDock writes them (``attach_esm`` concatenates those). Values are returned as numpy arrays in their
    stored dtype (bfloat16 becomes float32); shapes are checked by ``attach_esm`` per complex.
    Missing file: FileNotFoundError; unreadable or malformed file: DockingDataError.
    """
    path = Path(path)
    if path.is_dir():
        raise DockingDataError(f"{path}: is a directory; expected one .pt or .npz file of embeddings")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "ESM embeddings file not found", str(path))
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        import torch
        try:
            with _numpy_safe_globals():
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many types (UnpicklingError, RuntimeError, EOFError, ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise DockingDataError(f"{path}: cannot read as a weights-only torch file "
                                   f"({type(e).__name__}: {first[:200]})") from e
        if not isinstance(obj, dict):
            raise DockingDataError(f"{path}: holds a {type(obj).__name__}, expected a dict name -> [R, d] tensor")
        items = list(obj.items())
    elif suffix == ".npz":
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DockingDataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from e
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DockingDataError(f"{path}: a single array, expected an .npz archive with one array per name")
        try:
            items = [(k, z[k]) for k in z.files]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DockingDataError(f"{path}: corrupt .npz member ({type(e).__name__}: {e})") from e
        finally:
            z.close()
    else:
        raise DockingDataError(f"{path}: ESM embeddings format {suffix!r} not supported (.pt, .pth or .npz)")
    if not items:
        raise DockingDataError(f"{path}: holds no embeddings")
    out: dict[str, np.ndarray] = {}
    for key, value in items:
        if not isinstance(key, str):
            raise DockingDataError(f"{path}: key {key!r} is a {type(key).__name__}, expected a str name")
        out[key] = _to_numpy(value, f"{path}: entry {key!r}")
    return out


def _chain_keys(name: str, embeddings) -> list[tuple[int, str]]:
    """[(i, key)] of the "{name}_chain_{i}" keys in ``embeddings``, sorted by i (a scan of all keys)."""
    prefix = f"{name}_chain_"
    tails = [(k, k[len(prefix):]) for k in embeddings if isinstance(k, str) and k.startswith(prefix)]
    return sorted((int(t), k) for k, t in tails if t.isascii() and t.isdigit())


def _chain_keys_fast(name: str, embeddings) -> list[tuple[int, str]]:
    """Keys "{name}_chain_0", "_1", ... while present (DiffDock numbers chains 0..n-1), without scanning the
    whole table; empty when chain 0 is missing or another index follows within 8 (a gap)."""
    keys: list[tuple[int, str]] = []
    while f"{name}_chain_{len(keys)}" in embeddings:
        keys.append((len(keys), f"{name}_chain_{len(keys)}"))
    n = len(keys)
    if any(f"{name}_chain_{j}" in embeddings for j in range(n + 1, n + 9)):
        return []
    return keys


def _matrix(value, name: str, key: str) -> np.ndarray:
    try:
        e = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DockingDataError(f"{name}: ESM embedding {key!r} is not a numeric array ({err})") from err
    if e.ndim != 2:
        raise DockingDataError(f"{name}: ESM embedding {key!r} has shape {e.shape}, expected [residues, dim]")
    return e


def _complex_esm(c: Complex, embeddings) -> np.ndarray:
    r = c.num_residues
    if c.name in embeddings:
        e = _matrix(embeddings[c.name], c.name, c.name)
        if len(e) != r:
            raise DockingDataError(f"{c.name}: ESM embedding {c.name!r} has {len(e)} rows, "
                                   f"expected {r} (the complex's residue count)")
        return e
    keys = _chain_keys_fast(c.name, embeddings)
    rows = [np.shape(embeddings[k])[0] if np.ndim(embeddings[k]) else -1 for _, k in keys]
    if not keys or sum(rows) != r:  # a scan of all keys finds chains after a gap and gives the full error
        keys = _chain_keys(c.name, embeddings)
    if not keys:
        raise DockingDataError(f"{c.name}: no ESM embedding (neither key '{c.name}' nor "
                               f"'{c.name}_chain_<i>') for its {r} residues")
    indices = [i for i, _ in keys]
    if len(set(indices)) != len(indices):
        raise DockingDataError(f"{c.name}: duplicate chain indices in ESM keys {[k for _, k in keys]}")
    pieces = [(k, _matrix(embeddings[k], c.name, k)) for _, k in keys]
    if len({p.shape[1] for _, p in pieces}) > 1:
        raise DockingDataError(f"{c.name}: ESM chain embeddings of different widths "
                               f"{ {k: p.shape[1] for k, p in pieces} }")
    pieces = [(k, p) for k, p in pieces if len(p)]  # DiffDock counts chains without residues (empty sequence)
    found = sum(len(p) for _, p in pieces)
    lengths = ", ".join(f"{k}: {len(p)}" for k, p in pieces)
    if found != r:
        raise DockingDataError(f"{c.name}: ESM chain embeddings hold {found} rows ({lengths}), "
                               f"expected {r} (the complex's residue count)")
    width = pieces[0][1].shape[1] if pieces else 0
    ids = np.asarray(c.chain_ids) if c.chain_ids is not None else None
    chains = list(dict.fromkeys(ids.tolist())) if ids is not None else []
    if len(chains) <= 1:
        return np.concatenate([p for _, p in pieces]) if pieces else np.zeros((0, width), np.float32)
    # Chain k (order of first appearance) gets the k-th embedding, also where a chain's residues are not contiguous.
    counts = [int(np.sum(ids == ch)) for ch in chains]
    if [len(p) for _, p in pieces] != counts:
        raise DockingDataError(f"{c.name}: ESM chain embeddings ({lengths}) do not match its chains "
                               f"{dict(zip(chains, counts))}; {r} residues expected, {found} rows found")
    out = np.empty((r, width), np.float32)
    for ch, (_, p) in zip(chains, pieces):
        out[ids == ch] = p
    return out


def attach_esm(complexes: Iterable[Complex], embeddings: dict, dim: int | None = None) -> list[Complex]:
    """Copies of ``complexes`` with ``esm`` set from ``embeddings`` (``load_esm_embeddings``).

    A complex takes ``embeddings[name]`` when present, otherwise its ``"{name}_chain_{i}"`` entries in order of
    i, concatenated (empty chains skipped); with ``chain_ids`` the k-th non-empty chain embedding goes to the
    k-th chain in order of first appearance and must match its residue count. ``dim``: required width
    (ESM2 650M: 1280); without it all complexes must share the first one's width. DockingDataError naming
    the complex (expected residue count, rows found) when its embedding is missing or does not fit.
    """
    out = []
    for c in complexes:
        e = _complex_esm(c, embeddings)
        if dim is None:
            dim = e.shape[1]
        if e.shape[1] != dim:
            raise DockingDataError(f"{c.name}: ESM embeddings of width {e.shape[1]}, expected {dim}")
        out.append(dataclasses.replace(c, esm=e))
    return out


# ---------------------------------------------------------------------- ligand cut from a PDB entry

# AutoDock atom types (PDBQT columns 78-79) -> element.
_AD_TYPES = {"A": "C", "C": "C", "N": "N", "NA": "N", "NS": "N", "OA": "O", "OS": "O", "S": "S", "SA": "S",
             "HD": "H", "HS": "H", "H": "H", "P": "P", "F": "F", "CL": "Cl", "BR": "Br", "I": "I"}
_TWO_LETTER = {"CL", "BR", "FE", "ZN", "MG", "MN", "CA", "NA", "CU", "CO", "NI", "SE", "HG", "CD", "AS"}


def _element(line: str, pdbqt: bool) -> str:
    if pdbqt:
        t = line[77:79].strip().upper()
        return _AD_TYPES.get(t, t.capitalize())
    el = line[76:78].strip()
    if el.isalpha():
        return el.capitalize()
    # Old files (columns 73-80 hold an id): the element is right-justified in the atom-name columns 13-14.
    name = line[12:16]
    if name[0] in " 0123456789":
        return name[1]
    if name[0] == "H":
        return "H"
    return name[:2].capitalize() if name[:2].upper() in _TWO_LETTER and name[2:3] in " 0123456789" else name[0]


def cut_ligand(path: str | Path, resname: str, smiles: str, chain: str | None = None):
    """Heavy-atom ligand ``resname`` (first copy in file order, or the copy in ``chain``) from the HETATM
    records of a whole PDB/PDBQT entry; bond orders from the template ``smiles``, stereo from the 3D pose."""
    Chem, AllChem = import_rdkit()
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    path = Path(path)
    pdbqt = path.suffix.lower() == ".pdbqt"
    groups: dict[tuple[str, str], list[tuple[str, tuple[float, float, float]]]] = {}
    seen: set[tuple[str, str, str]] = set()
    for lineno, line in enumerate(_model_lines(path), 1):
        if not line.startswith("HETATM") or line[17:20].strip() != resname:
            continue
        if chain is not None and line[21] != chain:
            continue
        key = (line[21], line[22:27])
        atom = line[12:16].strip()
        if (*key, atom) in seen:  # first altloc wins
            continue
        seen.add((*key, atom))
        el = _element(line, pdbqt)
        if el != "H":
            groups.setdefault(key, []).append((el, _coords(line, f"{path}:{lineno}")))
    if not groups:
        where = f" in chain {chain!r}" if chain is not None else ""
        raise DockingDataError(f"{path}: no HETATM residue {resname}{where}")
    atoms = next(iter(groups.values()))
    template = Chem.MolFromSmiles(smiles)
    if template is None:
        raise DockingDataError(f"{path}: template SMILES for {resname} does not parse: {smiles}")
    if len(atoms) != template.GetNumAtoms():
        raise DockingDataError(f"{path}: {resname} has {len(atoms)} heavy atoms, template has "
                               f"{template.GetNumAtoms()} (missing atoms in the crystal structure?)")
    mol = Chem.RWMol()
    conf = Chem.Conformer(len(atoms))
    for el, xyz in atoms:
        try:
            idx = mol.AddAtom(Chem.Atom(el))
        except RuntimeError as e:
            raise DockingDataError(f"{path}: unknown element {el!r} in {resname}") from e
        conf.SetAtomPosition(idx, Point3D(*xyz))
    mol.AddConformer(conf, assignId=True)
    with _quiet_rdkit():
        try:
            rdDetermineBonds.DetermineConnectivity(mol)
            for a in mol.GetAtoms():
                a.SetNoImplicit(False)
            out = AllChem.AssignBondOrdersFromTemplate(template, mol.GetMol())
            Chem.SanitizeMol(out)
            Chem.AssignStereochemistryFrom3D(out)
        except Exception as e:
            raise DockingDataError(f"{path}: {resname} does not match its template {smiles} ({e})") from e
    got, want = Chem.MolToSmiles(out, isomericSmiles=False), Chem.MolToSmiles(template, isomericSmiles=False)
    if got != want:
        raise DockingDataError(f"{path}: {resname} from the coordinates is {got}, template is {want}")
    return out


# ----------------------------------------------------------------------------- offline complexes

@dataclasses.dataclass(frozen=True)
class OfflineEntry:
    """A crystal complex shipped inside a registry package (PyPI or Debian)."""

    name: str               # PDB id
    provider: str           # "pip:<import name>" or "deb:<package>"
    protein: str            # path under the provider's root
    ligand: str | None      # SDF under the same root, or None: cut `resname` out of `protein`
    resname: str | None = None
    smiles: str | None = None  # bond-order template for a cut ligand (wwPDB chemical component)
    chain: str | None = None
    note: str = ""


OFFLINE_TABLE: tuple[OfflineEntry, ...] = (
    # PoseBusters' example complexes: protein (OpenMM-processed, one ligand copy removed) + crystal ligand SDF.
    *(OfflineEntry(pid, "pip:posebusters", f"datasets/pdb/{pid}/{pid}_protein_one_lig_removed.pdb",
                   f"datasets/pdb/{pid}/{pid}_ligand.sdf", note=f"PoseBusters example, ligand {res}")
      for pid, res in (("1ia1", "TQ3"), ("1of6", "DTY"), ("1s3v", "TQD"), ("1uou", "CMU"))),
    # ProLIF test data: the PLINDER system 1s2g__1__1.A_2.C__1.D (receptor chains A, C; 2'-deoxyadenosine).
    OfflineEntry("1s2g", "pip:prolif", "data/implicitHbond/receptor.pdb", "data/implicitHbond/1.D.sdf",
                 note="PLINDER system 1s2g__1__1.A_2.C__1.D (ProLIF implicitHbond data)"),
    # Whole PDB entries in Debian data packages: ligand cut out by residue name, protein = ATOM records.
    OfflineEntry("1hpv", "deb:pymol-data", "pymol/data/tut/1hpv.pdb", None, "478",
                 "CC(C)CN(C[C@@H](O)[C@H](Cc1ccccc1)NC(=O)O[C@H]1CCOC1)S(=O)(=O)c1ccc(N)cc1",
                 note="HIV-1 protease + amprenavir (478)"),
    OfflineEntry("5dpv", "deb:rdkit-data", "RDKit/Contrib/CalcLigRMSD/data/5dpv.pdb", None, "SKE",
                 "Nc1nc(Nc2ccc(cc2)S(N)(=O)=O)nn1C(=O)c1c(F)cccc1F", note="Aurora A + JNJ-7706621 (SKE)"),
    OfflineEntry("5dt0", "deb:rdkit-data", "RDKit/Contrib/CalcLigRMSD/data/5dt0.pdb", None, "SKE",
                 "Nc1nc(Nc2ccc(cc2)S(N)(=O)=O)nn1C(=O)c1c(F)cccc1F", note="Aurora A + JNJ-7706621 (SKE)"),
    OfflineEntry("6c83", "deb:rdkit-data", "RDKit/Contrib/CalcLigRMSD/data/6c83.pdb", None, "ACP",
                 "Nc1ncnc2c1ncn2[C@@H]1O[C@H](COP(=O)(O)OP(=O)(O)CP(=O)(O)O)[C@@H](O)[C@H]1O", chain="A",
                 note="Aurora A + monobody + AMP-PCP (ACP, chain A copy)"),
    OfflineEntry("1pgp", "deb:autodock-test", "autodock/Tests/1pgp_rec.pdbqt", None, "6PG",
                 "OC(=O)[C@H](O)[C@@H](O)[C@H](O)[C@H](O)COP(=O)(O)O",
                 note="6-phosphogluconate dehydrogenase + 6-phosphogluconate (6PG), AutoDock test receptor"),
)


class OfflineSet(NamedTuple):
    complexes: list[Complex]
    skipped: list[tuple[str, str]]  # (name, reason)


def _provider_root(provider: str, debian_root: Path) -> tuple[Path | None, str]:
    kind, _, package = provider.partition(":")
    if kind == "pip":
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            return None, f"pip package {package!r} not installed ({INSTALL_HINT})"
        return Path(next(iter(spec.submodule_search_locations))), ""
    if kind == "deb":
        return debian_root, ""
    raise ValueError(f"unknown provider {provider!r}")


def load_offline_entry(entry: OfflineEntry, debian_root: str | Path = "/usr/share") -> Complex:
    """One OFFLINE_TABLE entry as a Complex; DockingDataError (with the reason) when it is not available."""
    root, why = _provider_root(entry.provider, Path(debian_root))
    if root is None:
        raise DockingDataError(f"{entry.name}: {why}")
    protein = root / entry.protein
    if not protein.is_file():
        hint = f" (apt-get install {entry.provider[4:]})" if entry.provider.startswith("deb:") else ""
        raise DockingDataError(f"{protein}: missing{hint}")
    ca, types, chains = parse_protein(protein)
    if entry.ligand is not None:
        mol = read_ligand(root / entry.ligand)
        source = f"{entry.provider}:{entry.protein}+{entry.ligand}"
    else:
        mol = cut_ligand(protein, entry.resname, entry.smiles, chain=entry.chain)
        source = f"{entry.provider}:{entry.protein}#{entry.resname}"
    return Complex(name=entry.name, ca_coords=ca, residue_types=types, ligand=mol,
                   ligand_coords=_positions(mol), source=source, chain_ids=chains)


def offline_complexes(names: Iterable[str] | None = None, debian_root: str | Path = "/usr/share",
                      warn: bool = True) -> OfflineSet:
    """The OFFLINE_TABLE complexes that this machine has; every one left out is in ``skipped`` with why.

    Needs RDKit (MissingDockingDependency otherwise). ``warn`` also emits one warning listing the skipped.
    """
    import_rdkit()
    wanted = None if names is None else set(names)
    complexes, skipped = [], []
    for entry in OFFLINE_TABLE:
        if wanted is not None and entry.name not in wanted:
            continue
        try:
            complexes.append(load_offline_entry(entry, debian_root))
        except DockingDataError as e:
            skipped.append((entry.name, str(e)))
    if wanted is not None:
        skipped += [(n, "not in OFFLINE_TABLE") for n in sorted(wanted - {e.name for e in OFFLINE_TABLE})]
    if warn and skipped:
        warnings.warn("offline complexes skipped: " + "; ".join(f"{n}: {r}" for n, r in skipped), stacklevel=2)
    return OfflineSet(complexes, skipped)


# ------------------------------------------------------------------------------ ligand featurisation

# DiffDock process_mols.allowable_features; 'misc' is the last index of a column.
_CHIRALITY = ("CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER")
_HYBRIDISATION = ("SP", "SP2", "SP3", "SP3D", "SP3D2", "misc")
LIGAND_FEATURES: tuple[tuple[str, int], ...] = (  # (name, number of categories), DiffDock's column order
    ("atomic_num", 119),        # 1..118, misc
    ("chirality", 4),
    ("degree", 12),             # total degree (hydrogens included) 0..10, misc
    ("formal_charge", 12),      # -5..5, misc
    ("implicit_valence", 8),    # 0..6, misc
    ("num_h", 10),              # total H 0..8, misc
    ("radical_electrons", 6),   # 0..4, misc
    ("hybridisation", 6),
    ("aromatic", 2),
    ("num_rings", 8),           # rings the atom is in, 0..6, misc
    ("in_ring3", 2), ("in_ring4", 2), ("in_ring5", 2), ("in_ring6", 2), ("in_ring7", 2), ("in_ring8", 2),
)
LIGAND_FEATURE_DIMS = tuple(n for _, n in LIGAND_FEATURES)


def _bounded(value: int, lo: int, hi: int) -> int:
    """Index of value in range(lo, hi + 1), or the 'misc' index after it."""
    return value - lo if lo <= value <= hi else hi - lo + 1


def _implicit_valence(atom) -> int:
    try:
        from rdkit.Chem import ValenceType
        return atom.GetValence(ValenceType.IMPLICIT)
    except (ImportError, AttributeError, TypeError):  # RDKit before 2024.09
        return atom.GetImplicitValence()


def ligand_features(mol) -> np.ndarray:
    """[N, 16] int64 category indices per atom, DiffDock's ``lig_atom_featurizer`` columns (LIGAND_FEATURES)."""
    import_rdkit()
    ring = mol.GetRingInfo()
    rows = []
    for i, atom in enumerate(mol.GetAtoms()):
        chir = str(atom.GetChiralTag())
        hyb = str(atom.GetHybridization())
        rows.append([
            _bounded(atom.GetAtomicNum(), 1, 118),
            _CHIRALITY.index(chir) if chir in _CHIRALITY else _CHIRALITY.index("CHI_OTHER"),
            _bounded(atom.GetTotalDegree(), 0, 10),
            _bounded(atom.GetFormalCharge(), -5, 5),
            _bounded(_implicit_valence(atom), 0, 6),
            _bounded(atom.GetTotalNumHs(), 0, 8),
            _bounded(atom.GetNumRadicalElectrons(), 0, 4),
            _HYBRIDISATION.index(hyb) if hyb in _HYBRIDISATION else len(_HYBRIDISATION) - 1,
            int(atom.GetIsAromatic()),
            _bounded(ring.NumAtomRings(i), 0, 6),
            *(int(ring.IsAtomInRingOfSize(i, k)) for k in range(3, 9)),
        ])
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(LIGAND_FEATURES))


def ligand_features_onehot(features: np.ndarray) -> np.ndarray:
    """Concatenated one-hot [N, sum(LIGAND_FEATURE_DIMS)] float32 of ``ligand_features`` output."""
    features = np.asarray(features, dtype=np.int64).reshape(-1, len(LIGAND_FEATURE_DIMS))
    offsets = np.concatenate([[0], np.cumsum(LIGAND_FEATURE_DIMS)[:-1]])
    out = np.zeros((len(features), sum(LIGAND_FEATURE_DIMS)), dtype=np.float32)
    out[np.arange(len(features))[:, None], features + offsets] = 1.0
    return out


def _side(adj: list[list[int]], start: int, u: int, v: int) -> set[int]:
    """Atoms reachable from ``start`` without crossing bond (u, v)."""
    seen, todo = {start}, deque([start])
    while todo:
        a = todo.popleft()
        for b in adj[a]:
            if (a, b) in ((u, v), (v, u)) or b in seen:
                continue
            seen.add(b)
            todo.append(b)
    return seen


def rotatable_bonds(mol) -> np.ndarray:
    """[M, 2] int64 DiffDock torsion bonds (u, v), in the molecule's bond order.

    A bond is rotatable when removing it splits the molecule and the smaller side has more than one atom
    (any bond order). v is on the side DiffDock rotates: the smaller one; on a tie, the side holding the
    lowest atom index (DiffDock takes the first of networkx's equal-sized components).
    """
    import_rdkit()
    adj: list[list[int]] = [[] for _ in range(mol.GetNumAtoms())]
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    for a, b in bonds:
        adj[a].append(b)
        adj[b].append(a)
    out = []
    for u, v in bonds:
        side_v = _side(adj, v, u, v)
        if u in side_v:  # ring bond
            continue
        side_u = _side(adj, u, u, v)
        if len(side_u) < len(side_v) or (len(side_u) == len(side_v) and min(side_u) < min(side_v)):
            u, v, side_v = v, u, side_u
        if len(side_v) > 1:
            out.append((u, v))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def etkdg_conformer(mol, seed: int = 0):
    """Copy of ``mol`` (same atom order, heavy atoms) with one ETKDGv2 conformer, as DiffDock generates it:
    embed with hydrogens, up to three tries (seeds seed, seed+1, seed+2), then random starting coordinates
    plus an MMFF optimisation. Deterministic for a given seed."""
    Chem, AllChem = import_rdkit()
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    work = Chem.AddHs(work)
    params = AllChem.ETKDGv2()
    conf_id = -1
    for attempt in range(3):
        params.randomSeed = int(seed) + attempt
        conf_id = AllChem.EmbedMolecule(work, params)
        if conf_id != -1:
            break
    if conf_id == -1:
        params.randomSeed = int(seed)
        params.useRandomCoords = True
        conf_id = AllChem.EmbedMolecule(work, params)
        if conf_id == -1:
            raise DockingDataError(f"ETKDG could not embed {Chem.MolToSmiles(mol)} (seed {seed})")
        AllChem.MMFFOptimizeMolecule(work, confId=conf_id)
    return Chem.RemoveAllHs(work, sanitize=True)


__all__ = [
    "AMINO_ACIDS", "Complex", "DockingDataError", "INSTALL_HINT", "LIGAND_FEATURES", "LIGAND_FEATURE_DIMS",
    "MissingDockingDependency", "OFFLINE_TABLE", "OfflineEntry", "OfflineSet", "SPLITS", "SPLIT_ALIASES",
    "UNKNOWN_RESIDUE", "attach_esm", "crop_to_pocket", "cut_ligand", "etkdg_conformer", "import_rdkit",
    "ligand_features", "ligand_features_onehot", "load_esm_embeddings", "load_offline_entry", "load_pdbbind_complex",
    "load_split", "offline_complexes", "parse_protein", "read_ligand", "residue_index", "rotatable_bonds",
]


def synthetic_complex(smiles: str, n_residues: int, seed: int, name: str,
                      shell: tuple[float, float] = (5.0, 12.0), offset: float = 0.0) -> Complex:
    """A made-up complex for tests and timings (source "synthetic", never a result): the
    ligand's ETKDG pose stands in for the crystal pose, inside n_residues C-alpha points at
    random directions and `shell` distances (Angstrom) from its centre shifted by `offset` along
    every axis (offset != 0 puts the protein centre away from the ligand), random residue types."""
    mol = etkdg_conformer(import_rdkit()[0].MolFromSmiles(smiles), seed=seed)
    pos = mol.GetConformer().GetPositions()
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_residues, 3))
    ca = pos.mean(0) + offset + d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(*shell, (n_residues, 1))
    return Complex(name=name, ca_coords=ca, residue_types=rng.integers(0, 21, n_residues), ligand=mol,
                   ligand_coords=pos, source="synthetic")
