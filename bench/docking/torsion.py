"""Torsion and rigid updates of a ligand conformer (gcorso/DiffDock utils/torsion.py, diffusion_utils.py).

Rotatable bonds and masks (torsion.py `get_transformation_mask`): a bond is rotatable when removing it
disconnects the molecular graph and the smaller side has more than one atom; the rotated side is the
smaller one, and bond (u, v) is oriented so that v is on it.
Torsion update (torsion.py `modify_conformer_torsion_angles`), bond by bond in order: the masked atoms
rotate by theta about the axis pos[u] - pos[v] ("positive rotation if pointing inwards") through pos[v].
With that convention the IUPAC dihedral (a, u, v, b), a on u's side and b on v's, changes by -theta.
Rigid update + alignment (diffusion_utils.py `modify_conformer`): rotate by R(rot_update) about the
ligand centre (mean of atom positions), translate, then apply the torsions and Kabsch-align the result
onto the rigidly moved conformer, so torsion changes do not move the pose in the least-squares sense.
Coordinates may be numpy or torch, [N, 3]; results come back in the input's type and dtype (float64 inside).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bench.docking.so3 import rotvec_to_matrix


def _components(edges: np.ndarray, n_atoms: int) -> np.ndarray:
    """Component label per atom [N] for undirected edges [E, 2]."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_atoms, n_atoms))
    return connected_components(adj, directed=False)[1]


def _without(edges: np.ndarray, u: int, v: int) -> np.ndarray:
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    return e[~(((e[:, 0] == u) & (e[:, 1] == v)) | ((e[:, 0] == v) & (e[:, 1] == u)))]


def rotatable_bond_masks(edges, n_atoms: int, bonds: Sequence[tuple[int, int]]) -> np.ndarray:
    """[M, N] bool: for bond (u, v), the atoms connected to v once the bond is removed (v included).

    edges: [E, 2] bonds, each listed once or in both directions. Raises for a bond inside a ring.
    """
    masks = np.zeros((len(bonds), n_atoms), dtype=bool)
    for i, (u, v) in enumerate(bonds):
        labels = _components(_without(edges, u, v), n_atoms)
        if labels[u] == labels[v]:
            raise ValueError(f"bond ({u}, {v}) is in a ring: removing it leaves the graph connected")
        masks[i] = labels == labels[v]
    return masks


def find_rotatable_bonds(edges, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """DiffDock's rule: bridges whose smaller side has > 1 atom, oriented (u, v) with v on the smaller
    side (ties: v is the bond's second atom as listed). Returns bonds [M, 2] and masks [M, N]."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    seen, bonds, masks = set(), [], []
    for u, v in e.tolist():
        if (min(u, v), max(u, v)) in seen:
            continue
        seen.add((min(u, v), max(u, v)))
        labels = _components(_without(e, u, v), n_atoms)
        if labels[u] == labels[v]:
            continue
        side_u, side_v = labels == labels[u], labels == labels[v]
        if side_u.sum() < side_v.sum():
            u, v, side_v = v, u, side_u
        if side_v.sum() > 1:
            bonds.append((u, v))
            masks.append(side_v)
    return (np.asarray(bonds, dtype=np.int64).reshape(-1, 2),
            np.asarray(masks, dtype=bool).reshape(-1, n_atoms))


def torsion_quadruplets(edges, bonds) -> np.ndarray:
    """[M, 4] (a, u, v, b) per bond: a a neighbour of u other than v, b of v other than u (first listed),
    as in DiffDock's `get_dihedrals`."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    nbrs: dict[int, list[int]] = {}
    for i, j in e.tolist():
        nbrs.setdefault(i, []).append(j)
        nbrs.setdefault(j, []).append(i)
    return np.asarray([(next(a for a in nbrs[u] if a != v), u, v, next(b for b in nbrs[v] if b != u))
                       for u, v in np.asarray(bonds).tolist()], dtype=np.int64).reshape(-1, 4)


def _as64(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x).to(torch.float64)


def _like(out: torch.Tensor, ref):
    """Return `out` in the type (numpy / torch) and dtype of `ref`."""
    if isinstance(ref, np.ndarray):
        return out.detach().cpu().numpy().astype(ref.dtype if ref.dtype.kind == "f" else np.float64)
    return out.to(ref.dtype if ref.is_floating_point() else torch.float64)


def apply_torsion_updates(pos, bonds, masks, angles):
    """Rotate each bond's masked atoms by its angle, in order. pos [N, 3], bonds [M, 2], masks [M, N]
    bool, angles [M] (radians) -> [N, 3]. Differentiable in pos and angles for torch inputs."""
    x = _as64(pos)
    masks_t = torch.as_tensor(np.ascontiguousarray(masks) if not torch.is_tensor(masks) else masks,
                              dtype=torch.bool, device=x.device)
    ang = _as64(angles).to(x.device).reshape(-1)
    for i, (u, v) in enumerate(np.asarray(bonds).reshape(-1, 2).tolist()):
        axis = x[u] - x[v]
        rot = rotvec_to_matrix(axis / axis.norm() * ang[i])             # [3, 3]
        moved = (x - x[v]) @ rot.T + x[v]
        x = torch.where(masks_t[i][:, None], moved, x)
    return _like(x, pos)


def rigid_update(pos, tr_update, rot_update):
    """(pos - centre) R^T + tr + centre, R = exp(rot_update), centre = mean position. pos [N, 3]."""
    x = _as64(pos)
    centre = x.mean(0, keepdim=True)
    rot = rotvec_to_matrix(_as64(rot_update).to(x.device).reshape(3))
    return _like((x - centre) @ rot.T + _as64(tr_update).to(x.device).reshape(1, 3) + centre, pos)


def kabsch_align(mobile, target):
    """Rotate + translate `mobile` [N, 3] onto `target` [N, 3] (least-squares, proper rotation)."""
    a, b = _as64(mobile), _as64(target).to(_as64(mobile).device)
    ca, cb = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    u, _, vt = torch.linalg.svd((a - ca).T @ (b - cb))                  # H = A^T B, [3, 3]
    d = torch.sign(torch.linalg.det(vt.T @ u.T))
    fix = torch.diag(torch.stack([torch.ones_like(d), torch.ones_like(d), d]))
    rot = vt.T @ fix @ u.T
    return _like((a - ca) @ rot.T + cb, mobile)


def modify_conformer(pos, tr_update, rot_update, torsion_updates=None, bonds=None, masks=None,
                     align: bool = True):
    """DiffDock's pose update: rigid move about the centre, then torsions, then Kabsch onto the rigid pose."""
    rigid = rigid_update(pos, tr_update, rot_update)
    if torsion_updates is None:
        return rigid
    flex = apply_torsion_updates(rigid, bonds, masks, torsion_updates)
    return kabsch_align(flex, rigid) if align else flex


def torsion_angles(coords, quadruplets):
    """IUPAC dihedral angles in (-pi, pi]. coords [N, 3], quadruplets [M, 4] -> [M]."""
    x = _as64(coords)
    q = torch.as_tensor(np.ascontiguousarray(quadruplets) if not torch.is_tensor(quadruplets) else quadruplets,
                        dtype=torch.long, device=x.device).reshape(-1, 4)
    p0, p1, p2, p3 = (x[q[:, i]] for i in range(4))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = torch.linalg.cross(b0, b1), torch.linalg.cross(b1, b2)
    y = b1.norm(dim=-1) * (b0 * n2).sum(-1)
    return _like(torch.atan2(y, (n1 * n2).sum(-1)), coords)
