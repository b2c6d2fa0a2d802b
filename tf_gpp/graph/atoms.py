"""Channel atoms: every channel a layer creates, with a union-find of couplings.

An *atom* is one channel born at one layer (a Dense unit, a conv filter, a
model input channel). Tensors are described by an array of atom ids along
their last axis. Coupling two channels (an ``Add``, a shared layer) unions
their atoms; a *unit* is a union-find class: the smallest set of channels that
must be removed together. Frozen units are never pruned and carry the reason.
"""

from __future__ import annotations

import numpy as np


class AtomTable:
    """Union-find over channel atoms, remembering creators and freeze reasons."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._creator: list[str] = []
        self._frozen: dict[int, str] = {}  # root -> reason

    def __len__(self) -> int:
        return len(self._parent)

    def new(self, n: int, creator: str, frozen: str | None = None) -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        self._creator.extend([creator] * n)
        atoms = np.arange(start, start + n, dtype=np.int64)
        if frozen is not None:
            for a in range(start, start + n):
                self._frozen[a] = frozen
        return atoms

    def find(self, a: int) -> int:
        parent = self._parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def _union1(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:  # keep the oldest atom as root: deterministic
            ra, rb = rb, ra
        self._parent[rb] = ra
        reason = self._frozen.pop(rb, None)
        if reason is not None and ra not in self._frozen:
            self._frozen[ra] = reason

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        if len(a) != len(b):
            raise ValueError(f"cannot couple {len(a)} channels with {len(b)}")
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x != y:
                self._union1(x, y)

    def freeze(self, a: np.ndarray, reason: str) -> None:
        for x in a.tolist():
            r = self.find(x)
            self._frozen.setdefault(r, reason)

    def roots(self, a: np.ndarray) -> np.ndarray:
        find = self.find
        return np.fromiter((find(x) for x in a.tolist()), dtype=np.int64, count=len(a))

    def frozen_reason(self, root: int) -> str | None:
        return self._frozen.get(self.find(root))

    def creator(self, atom: int) -> str:
        return self._creator[atom]

    def all_roots(self) -> np.ndarray:
        """Root of every atom, as one array (index = atom id)."""
        return self.roots(np.arange(len(self._parent), dtype=np.int64))

    def frozen_roots(self) -> set[int]:
        return {self.find(r) for r in self._frozen}
