"""The students' trees compiled to C: one shared library per bundle, one call scores every task.

Why: ``benchmarks/tree_scoring.py`` measured LightGBM's ``Booster.predict``, the numpy evaluator
(``trees.TreeEnsemble``) and compiled trees side by side on one customer's 13 tasks; all three give
bit-identical raw scores and compiled trees are the fastest (about 0.2x Booster's time), so the
bundle ships them. The library is plain C over ``libm``, built with gcc when the bundle is built
(``build_library``) and loaded here with ``ctypes`` from the standard library.

Semantics follow ``trees``: a task's row is read at its student's selected columns and expanded
once into the copies its split nodes read (values in LightGBM's zero band become 0.0; a missing
value becomes -inf to go left or NaN to go right), every tree is a nested ``if (v[i] <= t)`` with
thresholds and leaf values written as exact hexadecimal literals, and the trees of a class are
added in tree order from 0.0, as ``GBDT::PredictRaw`` does.
"""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finai_serving.trees import K_ZERO_THRESHOLD, TreeEnsemble, read_columns


def _literal(value: float) -> str:
    return value.hex() if np.isfinite(value) else ("INFINITY" if value > 0 else "-INFINITY")


def _tree(arrays: Mapping[str, np.ndarray], ref: int, column: np.ndarray, indent: str) -> list[str]:
    if ref < 0:
        return [f"{indent}return {_literal(float(arrays['leaf_value'][~ref]))};"]
    return ([f"{indent}if (v[{column[ref]}] <= {_literal(float(arrays['threshold'][ref]))}) {{"]
            + _tree(arrays, int(arrays["left_child"][ref]), column, indent + "  ")
            + [f"{indent}}} else {{"]
            + _tree(arrays, int(arrays["right_child"][ref]), column, indent + "  ")
            + [f"{indent}}}"])


def _task(i: int, arrays: Mapping[str, np.ndarray], columns: Sequence[int]) -> list[str]:
    """``static void task<i>(const double *x, double *out)``: one student on a full input row."""
    TreeEnsemble(dict(arrays))                                   # the same validation as the numpy path
    f, k = int(arrays["num_features"]), int(arrays["num_class"])
    if len(columns) != f:
        raise ValueError(f"task {i}: {len(columns)} selected columns for a booster of {f} features")
    variants, column = read_columns(dict(arrays))
    lines = [f"static const int cols{i}[{f}] = {{{', '.join(str(int(c)) for c in columns)}}};"]
    for t, root in enumerate(arrays["tree_root"].tolist()):
        lines += [f"static double t{i}_{t}(const double *v) {{"] + _tree(arrays, root, column, "  ") + ["}"]
    lines += [f"static void task{i}(const double *x, double *out) {{", f"  double v[{len(variants) * f}];",
              f"  for (int j = 0; j < {f}; ++j) {{",
              f"    double a = x[cols{i}[j]]; int is_nan = isnan(a), is_zero = fabs(a) <= {K_ZERO_THRESHOLD.hex()};",
              "    if (is_zero) a = 0.0;"]
    for n, (zero_missing, left) in enumerate(variants):
        missing = "is_nan || is_zero" if zero_missing else "is_nan"
        lines.append(f"    v[{n} * {f} + j] = ({missing}) ? {'-INFINITY' if left else 'NAN'} : a;")
    lines += ["  }", f"  for (int c = 0; c < {k}; ++c) out[c] = 0.0;"]
    lines += [f"  out[{c}] += t{i}_{t}(v);" for t, c in enumerate(arrays["tree_class"].tolist())]
    return lines + ["}", ""]


def library_source(students: Sequence[tuple[str, Mapping[str, np.ndarray], Sequence[int]]]) -> tuple[str, list]:
    """C source of ``void score_all(const double *x, double *out)`` and its layout [(task, classes, offset)]."""
    lines, layout, offset = ["#include <math.h>", ""], [], 0
    for i, (task, arrays, columns) in enumerate(students):
        lines += _task(i, arrays, columns)
        layout.append([task, int(arrays["num_class"]), offset])
        offset += int(arrays["num_class"])
    lines += ["void score_all(const double *x, double *out) {"]
    lines += [f"  task{i}(x, out + {off});" for i, (_, _, off) in enumerate(layout)]
    return "\n".join(lines + ["}", ""]), layout


def build_library(source: str, out: Path) -> None:
    """Compile with gcc (-O2, position independent, libm only) into ``out``; a clear error without gcc."""
    out = Path(out)
    c_file = out.with_suffix(".c")
    c_file.write_text(source)
    try:
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(out), str(c_file), "-lm"], check=True,
                       capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise RuntimeError("compiling the trees needs gcc; install it or set serving.yaml 'scorer: trees'") from None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"gcc failed on the generated trees: {exc.stderr[-800:]}") from None
    finally:
        c_file.unlink(missing_ok=True)


class CompiledScorer:
    """The bundle's ``trees.so``: ``raw(x)`` gives every modelled task's raw booster output for one row."""

    def __init__(self, path: Path, layout: Sequence[Sequence[Any]], width: int):
        self.layout, self.width = [(str(t), int(k), int(o)) for t, k, o in layout], int(width)
        self.size = sum(k for _, k, _ in self.layout)
        self._fn = ctypes.CDLL(str(path)).score_all
        self._fn.argtypes, self._fn.restype = [ctypes.c_void_p, ctypes.c_void_p], None

    def raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One input row ``[1, width]`` -> {task: [1] or [1, classes]} raw scores."""
        row = np.ascontiguousarray(np.asarray(x, np.float64).reshape(-1))
        if row.shape != (self.width,):
            raise ValueError(f"input must be one row of {self.width} columns, got {list(np.shape(x))}")
        out = np.empty(self.size)
        self._fn(row.ctypes.data, out.ctypes.data)
        return {t: out[o:o + k].reshape(1, k) if k > 1 else out[o:o + 1] for t, k, o in self.layout}
