"""A student's LightGBM trees scored with numpy alone, to the raw score ``Booster.predict`` returns.

Why: the Lambda handler scores 13 students for one customer at a time, and ``Booster.predict``
pays the Python wrapper and the C API per call. Here a booster's JSON dump is flattened once
(``pack_booster``, shipped as ``trees.npz`` beside ``model.txt``) and ``TreeEnsemble.raw``
evaluates every tree at once: the decision of every split node is one vectorised comparison, then
a node index per tree walks down one level per step (the loop runs ``max_depth`` times, never over
trees). Leaves point to themselves, so a tree that reached its leaf early just stays there.

The decisions follow LightGBM's prediction path exactly (``Tree::NumericalDecision`` after the
C API has read a dense row):

- the row is cast to float64, and a value with ``|x| <= kZeroThreshold`` is not passed to the trees
  at all, so it reads as 0.0 (kZeroThreshold is the C++ float literal ``1e-35f``, 1.0000000180025095e-35;
  thresholds are common at +-kZeroThreshold, so +-1e-35f in a row would otherwise go the wrong way);
- missing type ``None``: NaN reads as 0.0; ``NaN``: NaN goes the default direction; ``Zero``: NaN
  and zero go the default direction; every other value goes left when ``x <= threshold``;
- the trees of a class are summed in tree order starting from 0.0, as ``GBDT::PredictRaw`` does,
  so the scores are bitwise equal, not merely close;
- the JSON dump writes thresholds beyond +-1e300 as +-1e300 (``Common::AvoidInf``), but the model
  holds +-inf there (a split "every number left, NaN right" has threshold +inf): they are restored.

Missing values are resolved before the walk: each split node reads one of up to four copies of the
row in which NaN (and, for ``Zero``, zero) is replaced by -inf (goes left) or NaN (goes right: NaN
<= anything is False, and +inf would not do, since thresholds can be +inf), so a decision is a
single ``x <= threshold``. Categorical splits, linear trees and random-forest
averaging are refused: our students use none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
K_ZERO_THRESHOLD = float(np.float32(1e-35))     # LightGBM's kZeroThreshold, the float 1e-35f as a double
MISSING_TYPES = ("None", "Zero", "NaN")         # missing_type codes 0, 1, 2 in the packed arrays
DUMP_INF = 1e300                                # dump_model's stand-in for an infinite threshold
CHUNK_ELEMENTS = 1 << 17                        # rows x nodes per step of a batch: the work arrays stay in cache


def _pack_tree(root: dict[str, Any], nodes: list[list], leaves: list[float]) -> tuple[int, int]:
    """Append one tree's split nodes and leaves; return its root reference and depth (leaves are ~index)."""
    def ref(node: dict[str, Any]) -> int:
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                raise ValueError("linear trees (linear_tree=true) are not supported")
            leaves.append(float(node["leaf_value"]))
            return ~(len(leaves) - 1)
        if node.get("decision_type") != "<=":
            raise ValueError(f"split on feature {node.get('split_feature')} has decision_type "
                             f"{node.get('decision_type')!r}: categorical splits are not supported")
        threshold = float(node["threshold"])
        if abs(threshold) >= DUMP_INF:
            threshold = np.copysign(np.inf, threshold)
        nodes.append([node["split_feature"], threshold, bool(node["default_left"]),
                      MISSING_TYPES.index(node["missing_type"]), 0, 0])
        return len(nodes) - 1

    top, depth = ref(root), 0
    stack = [(root, top, 0)]
    while stack:                        # iterative: a leaf-wise tree can be deeper than Python's recursion limit
        node, index, level = stack.pop()
        depth = max(depth, level)
        if index < 0:
            continue
        for slot, side in ((4, "left_child"), (5, "right_child")):
            child = node[side]
            nodes[index][slot] = ref(child)
            stack.append((child, nodes[index][slot], level + 1))
    return top, depth


def pack_booster(model_dump: dict[str, Any], num_iteration: int | None = None) -> dict[str, np.ndarray]:
    """Flatten ``Booster.dump_model()`` into the arrays ``TreeEnsemble`` reads (all ndarrays, for ``np.savez``).

    ``num_iteration`` keeps the first iterations, as ``Booster.predict(num_iteration=...)`` (None or <= 0: all
    the dump holds; pass the same value to ``dump_model``, which may have kept fewer already).
    """
    if model_dump.get("average_output"):
        raise ValueError("random-forest boosting (average_output) is not supported")
    per_iteration = int(model_dump["num_tree_per_iteration"])
    trees = model_dump["tree_info"]
    if num_iteration is not None and num_iteration > 0:
        trees = trees[:num_iteration * per_iteration]
    if len(trees) % per_iteration:
        raise ValueError(f"{len(trees)} trees is not a whole number of iterations of {per_iteration} trees")
    nodes: list[list] = []
    leaves: list[float] = []
    roots, max_depth = [], 0
    for tree in trees:
        root, depth = _pack_tree(tree["tree_structure"], nodes, leaves)
        roots.append(root)
        max_depth = max(max_depth, depth)
    table = np.array(nodes, dtype=object).reshape(-1, 6)
    return {"format": np.array(FORMAT),
            "split_feature": table[:, 0].astype(np.int32), "threshold": table[:, 1].astype(np.float64),
            "default_left": table[:, 2].astype(bool), "missing_type": table[:, 3].astype(np.int8),
            "left_child": table[:, 4].astype(np.int32), "right_child": table[:, 5].astype(np.int32),
            "leaf_value": np.array(leaves, np.float64), "tree_root": np.array(roots, np.int32),
            "tree_class": np.arange(len(trees), dtype=np.int32) % per_iteration,
            "num_class": np.array(per_iteration), "max_depth": np.array(max_depth),
            "num_features": np.array(int(model_dump["max_feature_idx"]) + 1)}


def _fold_zero_band(threshold: np.ndarray) -> np.ndarray:
    """Thresholds with which an input in [-kZeroThreshold, kZeroThreshold] goes where LightGBM sends it: as 0.0.

    LightGBM's dense-row reader drops such values, so the trees see 0.0. A threshold inside the band moves to its
    edge (just below -kZeroThreshold when negative, kZeroThreshold otherwise), which gives every value in the band
    the decision of 0.0 and changes none outside it: rows need no zeroing pass.
    """
    below = np.nextafter(-K_ZERO_THRESHOLD, -np.inf)
    negative = (threshold >= -K_ZERO_THRESHOLD) & (threshold < 0.0)
    positive = (threshold >= 0.0) & (threshold < K_ZERO_THRESHOLD)
    return np.where(negative, below, np.where(positive, K_ZERO_THRESHOLD, threshold))


def read_columns(arrays: dict[str, np.ndarray]) -> tuple[list[tuple[bool, bool]], np.ndarray]:
    """The copies of a row the split nodes read, and each split node's column in those copies side by side.

    A copy is (zero is missing too?, missing goes left?), and the column is copy x features + feature. A
    ``None`` node sends NaN where 0.0 goes (left when 0.0 <= threshold), so it reads the same copy as a
    ``NaN`` node with that default: at most four copies, usually two.
    """
    zero_missing = arrays["missing_type"] == MISSING_TYPES.index("Zero")
    left = np.where(arrays["missing_type"] == MISSING_TYPES.index("None"), arrays["threshold"] >= 0.0,
                    arrays["default_left"])
    keys = list(zip(zero_missing.tolist(), left.tolist(), strict=True))
    variants = sorted(set(keys)) or [(False, False)]
    slot = np.array([variants.index(k) for k in keys], np.intp)
    return variants, slot * int(arrays["num_features"]) + arrays["split_feature"].astype(np.intp)


class TreeEnsemble:
    """Packed trees ready to score: ``raw(x)`` equals ``Booster.predict(x, raw_score=True, num_iteration=...)``."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        if int(arrays["format"]) != FORMAT:
            raise ValueError(f"packed trees have format {int(arrays['format'])}, expected {FORMAT}")
        self.num_class, self.num_features = int(arrays["num_class"]), int(arrays["num_features"])
        self.max_depth = int(arrays["max_depth"])
        n = len(arrays["threshold"])
        self._splits, self._width = n, n + len(arrays["leaf_value"])   # node index: split nodes, then leaves

        def index(ref: np.ndarray) -> np.ndarray:
            ref = ref.astype(np.intp)
            return np.where(ref >= 0, ref, n + ~ref)

        self._left, self._right = index(arrays["left_child"]), index(arrays["right_child"])
        self._loop = np.arange(n, self._width, dtype=np.intp)          # a leaf's next node is itself
        self._value = np.concatenate([np.zeros(n), arrays["leaf_value"]])
        self._threshold = _fold_zero_band(arrays["threshold"].astype(np.float64))
        variants, self._column = read_columns(arrays)
        self._source = np.tile(np.arange(self.num_features), len(variants))  # the feature each copied column holds
        self._fill = np.repeat([-np.inf if left else np.nan for _, left in variants], self.num_features)
        zero_missing = np.repeat([zero for zero, _ in variants], self.num_features)
        self._zero_missing = zero_missing if zero_missing.any() else None

        # class-major order, tree order within a class: the running sum is GBDT::PredictRaw's
        tree_class = arrays["tree_class"]
        counts = np.bincount(tree_class, minlength=self.num_class)
        if len(counts) != self.num_class or (counts != counts[0]).any() or not counts[0]:
            raise ValueError(f"trees per class {counts.tolist()}: each of {self.num_class} classes needs as many, >= 1")
        self._roots = index(arrays["tree_root"][np.argsort(tree_class, kind="stable")])
        self._per_class = int(counts[0])

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TreeEnsemble:
        return cls(arrays)

    @classmethod
    def load(cls, path: Path | str) -> TreeEnsemble:
        with np.load(path, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of ``x`` [n, features] (the booster's own columns): [n], or [n, classes] for multiclass."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"input must be [rows, {self.num_features}], got {list(x.shape)}")
        rows = max(1, CHUNK_ELEMENTS // self._width)
        if len(x) <= rows:
            out = self._score(x)
        else:
            out = np.concatenate([self._score(x[lo:lo + rows]) for lo in range(0, len(x), rows)])
        return out[:, 0] if self.num_class == 1 else out

    def _expand(self, x: np.ndarray) -> np.ndarray:
        """The copies of ``x`` the split nodes read, side by side: [n, copies x features].

        A missing value becomes -inf (goes left) or NaN (goes right: NaN <= threshold is False).
        """
        copies = x.take(self._source, axis=1)
        missing = np.isnan(copies)
        if self._zero_missing is not None:
            missing |= self._zero_missing & (np.abs(copies) <= K_ZERO_THRESHOLD)
        return np.where(missing, self._fill, copies)

    def _score(self, x: np.ndarray) -> np.ndarray:
        """Walk every tree for rows ``x`` at once: first each split's next node, then one level per step."""
        n = len(x)
        goes_left = self._expand(x).take(self._column, axis=1) <= self._threshold
        step = np.empty((n, self._width), np.intp)
        step[:, :self._splits] = np.where(goes_left, self._left, self._right)
        step[:, self._splits:] = self._loop
        flat = step.ravel()
        if n == 1:
            node = self._roots
            for _ in range(self.max_depth):
                node = flat.take(node)
        else:                                          # the same walk with node indices into the flattened rows
            base = np.arange(0, n * self._width, self._width, dtype=np.intp)[:, None]
            step += base
            node = self._roots + base
            for _ in range(self.max_depth):
                node = flat.take(node)
            node -= base
        leaf = self._value.take(node).reshape(n, self.num_class, self._per_class)
        return np.add.accumulate(leaf, axis=2)[:, :, -1]
