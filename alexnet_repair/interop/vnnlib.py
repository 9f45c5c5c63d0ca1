"""VNN-LIB properties for edit images: writer, a parser of the subset it writes, and a point evaluator.

A VNN-LIB file states the *negation* of the safety property: a verifier answers ``sat`` with a counterexample,
or ``unsat`` when no input in the box violates the property (verified). Our property for an edit image x with
label t, margin M and radius E: for every input in the box ``[x - E, x + E] clipped to [0, 1]``,
``Y_t - Y_c > M`` for every other class c. The file asserts the box and the disjunction over c of
``Y_t - Y_c <= M`` (non-strict: ``unsat`` proves the strict ``> M``, hence ``>= M``).

Encodings of ``Y_t - Y_c <= M``:
- ``simple``: only ``(<= Y_i Y_j)`` atoms, the subset the VNN-COMP parsers (alpha-beta-CROWN, nnenum ...) read.
  With M = 0 the atom is ``(<= Y_t Y_c)`` on the 10-logit network; with M != 0 the network has 10 more outputs
  ``Y_{10+k} = logit_k - M`` (see onnx_export.ExportNet) and the atom is ``(<= Y_{10+t} Y_c)``.
- ``linear``: ``(<= (- Y_t Y_c) M)`` on the 10-logit network (full VNN-LIB / SMT-LIB arithmetic).

The parser reads declarations, box constraints on the inputs, and linear constraints on the outputs (atoms,
``and``, one ``or`` of ``and``s); the evaluator decides a property exactly when its box is one point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

ENCODINGS = ("simple", "linear")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_VAR = re.compile(r"^([XY])_(\d+)$")
_OPS = {"<=", ">=", "<", ">"}


def number(value: float) -> str:
    """A decimal without exponent that reads back as exactly ``value`` (float64)."""
    return np.format_float_positional(float(value), unique=True, trim="0")


def input_box(image: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (C,H,W) float64 bounds: ``[x - E, x + E]`` clipped to [0, 1] (exactly x when E = 0)."""
    x = np.asarray(image, dtype=np.float32).astype(np.float64).ravel()
    return np.clip(x - epsilon, 0.0, 1.0), np.clip(x + epsilon, 0.0, 1.0)


def disjunct_atoms(label: int, num_classes: int, margin: float, encoding: str) -> list[str]:
    """One atom per other class c, each stating ``Y_label - Y_c <= margin``."""
    others = [c for c in range(num_classes) if c != label]
    if encoding == "linear":
        return [f"(<= (- Y_{label} Y_{c}) {number(margin)})" for c in others]
    if encoding != "simple":
        raise ValueError(f"unknown encoding {encoding!r}")
    shifted = label + num_classes if margin != 0 else label
    return [f"(<= Y_{shifted} Y_{c})" for c in others]


def num_outputs(num_classes: int, margin: float, encoding: str) -> int:
    return 2 * num_classes if encoding == "simple" and margin != 0 else num_classes


def property_text(image: np.ndarray, label: int, *, margin: float = 0.0, epsilon: float = 0.0,
                  encoding: str = "simple", num_classes: int = 10, comments=()) -> str:
    """The VNN-LIB text for one edit image (see the module docstring for what it states)."""
    lower, upper = input_box(image, epsilon)
    outputs = num_outputs(num_classes, margin, encoding)
    lines = [f"; {line}" for line in comments]
    lines += [f"; unsat = verified: on every input in the box, Y_{label} - Y_c > {number(margin)} for every other "
              f"class c", f"; inputs X_0..X_{lower.size - 1}: the model input in C,H,W order, values in [0, 1]"]
    if outputs != num_classes:
        lines.append(f"; outputs Y_{num_classes}..Y_{outputs - 1} are the logits minus {number(margin)} "
                     f"(Y_{num_classes + label} <= Y_c  <=>  Y_{label} - Y_c <= {number(margin)})")
    lines += [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(outputs)]
    lines.append("; input box")
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        lines.append(f"(assert (<= X_{i} {number(hi)}))")
        lines.append(f"(assert (>= X_{i} {number(lo)}))")
    lines.append(f"; violation: some other class c with Y_{label} - Y_c <= {number(margin)}")
    atoms = disjunct_atoms(label, num_classes, margin, encoding)
    lines.append("(assert (or")
    lines += [f"    (and {atom})" for atom in atoms]
    lines.append("))")
    return "\n".join(lines) + "\n"


@dataclass
class VnnlibProperty:
    """A parsed property: an input box and the violation ``OR_k (A_k y <= b_k)`` (rows marked strict use <)."""

    num_inputs: int
    num_outputs: int
    lower: np.ndarray
    upper: np.ndarray
    disjuncts: list = field(default_factory=list)   # [(A (r, num_outputs), b (r,), strict (r,) bool)]

    @property
    def is_point(self) -> bool:
        return bool(np.array_equal(self.lower, self.upper))

    def violated_by(self, outputs) -> bool:
        """True when the outputs ``y`` satisfy some disjunct (a counterexample)."""
        y = np.asarray(outputs, dtype=np.float64).ravel()
        if y.size != self.num_outputs:
            raise DataError(f"{y.size} outputs given, the property declares {self.num_outputs}")
        for a, b, strict in self.disjuncts:
            lhs = a @ y
            if np.all(np.where(strict, lhs < b, lhs <= b)):
                return True
        return False


def _tree(text: str, where: str) -> list:
    text = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    stack, top = [], []
    for token in _TOKEN.findall(text):
        if token == "(":
            stack.append(top)
            top = []
        elif token == ")":
            if not stack:
                raise DataError(f"{where}: unbalanced ')'")
            done, top = top, stack.pop()
            top.append(done)
        else:
            top.append(token)
    if stack:
        raise DataError(f"{where}: unbalanced '(' (truncated file?)")
    return top


def _linear(expr, declared: dict, where: str) -> tuple[dict, float]:
    """A linear term -> ({variable: coefficient}, constant)."""
    if isinstance(expr, str):
        if _VAR.match(expr):
            if expr not in declared:
                raise DataError(f"{where}: {expr} is used but not declared")
            return {expr: 1.0}, 0.0
        try:
            return {}, float(expr)
        except ValueError:
            raise DataError(f"{where}: unexpected symbol {expr!r}") from None
    if not expr or expr[0] not in ("+", "-", "*"):
        raise DataError(f"{where}: unsupported term {_show(expr)}")
    parts = [_linear(e, declared, where) for e in expr[1:]]
    if expr[0] == "*":
        if len(parts) != 2 or (parts[0][0] and parts[1][0]):
            raise DataError(f"{where}: only constant * term products are supported: {_show(expr)}")
        (ca, ka), (cb, kb) = parts
        coef, (terms, const) = (ka, (cb, kb)) if not ca else (kb, (ca, ka))
        return {v: coef * c for v, c in terms.items()}, coef * const
    sign = [1.0] * len(parts) if expr[0] == "+" else ([-1.0] if len(parts) == 1 else [1.0] + [-1.0] * (len(parts) - 1))
    terms, const = {}, 0.0
    for s, (t, k) in zip(sign, parts):
        for v, c in t.items():
            terms[v] = terms.get(v, 0.0) + s * c
        const += s * k
    return terms, const


def _atom(expr, declared: dict, where: str) -> tuple[dict, float, bool]:
    """``(op lhs rhs)`` -> (coefficients, bound, strict) meaning ``coefficients . v  <= (or <) bound``."""
    if not isinstance(expr, list) or len(expr) != 3 or expr[0] not in _OPS:
        raise DataError(f"{where}: expected a comparison (<= a b), got {_show(expr)}")
    (lt, lk), (rt, rk) = _linear(expr[1], declared, where), _linear(expr[2], declared, where)
    terms = {v: lt.get(v, 0.0) - rt.get(v, 0.0) for v in set(lt) | set(rt)}
    bound = rk - lk
    if expr[0] in (">=", ">"):
        terms, bound = {v: -c for v, c in terms.items()}, -bound
    return {v: c for v, c in terms.items() if c != 0.0}, bound, expr[0] in ("<", ">")


def _show(expr) -> str:
    text = expr if isinstance(expr, str) else "(" + " ".join(_show(e) for e in expr) + ")"
    return text if len(text) < 80 else text[:77] + "..."


def parse_vnnlib(source: str | Path, text: str | None = None) -> VnnlibProperty:
    """Parse a VNN-LIB file (or ``text``) of the supported subset; anything else is a one-line DataError."""
    where = str(source)
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read {where}: {err}") from None
    declared: dict[str, int] = {}
    boxes, common, disjunction = {}, [], None
    for form in _tree(text, where):
        if not isinstance(form, list) or not form:
            raise DataError(f"{where}: unexpected top-level {_show(form)}")
        if form[0] == "declare-const":
            if len(form) != 3 or not isinstance(form[1], str) or not _VAR.match(form[1]) or form[2] != "Real":
                raise DataError(f"{where}: unsupported declaration {_show(form)} (expected X_i or Y_i Real)")
            declared[form[1]] = 1
            continue
        if form[0] != "assert" or len(form) != 2:
            raise DataError(f"{where}: unsupported command {_show(form)}")
        body = form[1]
        if isinstance(body, list) and body and body[0] == "or":
            if disjunction is not None:
                raise DataError(f"{where}: more than one (or ...) assertion is not supported")
            disjunction = [[_atom(a, declared, where) for a in _conjuncts(d)] for d in body[1:]]
            continue
        for term, bound, strict in (_atom(a, declared, where) for a in _conjuncts(body)):
            names = {v[0] for v in term}
            if names == {"X"}:
                if len(term) != 1:
                    raise DataError(f"{where}: input constraints must be bounds on one X_i each")
                (var, coef), = term.items()
                lo_hi = boxes.setdefault(var, [-np.inf, np.inf])
                if coef > 0:
                    lo_hi[1] = min(lo_hi[1], bound / coef)
                else:
                    lo_hi[0] = max(lo_hi[0], bound / coef)
            elif names == {"Y"} or not names:
                common.append((term, bound, strict))
            else:
                raise DataError(f"{where}: constraints mixing inputs and outputs are not supported")
    return _assemble(where, declared, boxes, common, disjunction)


def _conjuncts(expr) -> list:
    """``(and a b ...)`` -> [a, b, ...]; a single atom -> [atom]."""
    return expr[1:] if isinstance(expr, list) and expr and expr[0] == "and" else [expr]


def _assemble(where, declared, boxes, common, disjunction) -> VnnlibProperty:
    xs = sorted(int(v[2:]) for v in declared if v[0] == "X")
    ys = sorted(int(v[2:]) for v in declared if v[0] == "Y")
    if not xs or not ys or xs != list(range(len(xs))) or ys != list(range(len(ys))):
        raise DataError(f"{where}: inputs X_0..X_n and outputs Y_0..Y_m must all be declared")
    lower, upper = np.full(len(xs), -np.inf), np.full(len(xs), np.inf)
    for var, (lo, hi) in boxes.items():
        lower[int(var[2:])], upper[int(var[2:])] = lo, hi
    unbounded = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
    if unbounded.size:
        raise DataError(f"{where}: input X_{unbounded[0]} is not bounded on both sides")
    if (lower > upper).any():
        raise DataError(f"{where}: empty input box at X_{int(np.flatnonzero(lower > upper)[0])}")
    rows_of = [list(common) + d for d in (disjunction or [[]])]
    disjuncts = []
    for rows in rows_of:
        a = np.zeros((len(rows), len(ys)))
        b = np.array([bound for _, bound, _ in rows], dtype=np.float64)
        for r, (term, _, _) in enumerate(rows):
            for var, coef in term.items():
                if var[0] == "X":
                    raise DataError(f"{where}: input constraints inside (or ...) are not supported")
                a[r, int(var[2:])] = coef
        disjuncts.append((a, b, np.array([s for _, _, s in rows], dtype=bool)))
    return VnnlibProperty(len(xs), len(ys), lower, upper, disjuncts)


def check_instance(onnx_path, vnnlib_path, samples: int = 0, seed: int = 0) -> str:
    """Decide a property with onnxruntime: ``sat`` / ``unsat`` when the box is one point; otherwise ``sat`` if the
    centre or one of ``samples`` random points of the box violates it, else ``unknown`` (not a verifier)."""
    from .onnx_export import ort_session

    prop = parse_vnnlib(vnnlib_path)
    session = ort_session(onnx_path)
    spec = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
    if int(np.prod(shape[1:])) != prop.num_inputs:
        raise DataError(f"{vnnlib_path}: {prop.num_inputs} inputs, the network takes {shape[1:]}")
    points = [(prop.lower + prop.upper) / 2]
    rng = np.random.default_rng(seed)
    points += [rng.uniform(prop.lower, prop.upper) for _ in range(0 if prop.is_point else samples)]
    for point in points:
        x = point.astype(np.float32).reshape([1, *shape[1:]])
        if prop.violated_by(session.run(None, {spec.name: x})[0]):
            return "sat"
    return "unsat" if prop.is_point else "unknown"
