"""Per-file summary of a mutmut run over storage/analysis/ (`make mutation`; docs/testing.md).

Reads the results mutmut keeps under mutants/ and prints, per mutated file, how many mutants were killed
and how many survived, leaving out the mutants that only change the text of an error message. Such a
mutant is recognised on the code, not on its name: its function, with the exception of every ``raise``
statement and the message arguments of the validation helpers (``what`` / ``hint``, which only ever go into
a ValueError's text) blanked out, is the same syntax tree as the original. mutmut's configuration already
skips the ``raise`` lines (``do_not_mutate_patterns``); the helpers' message arguments are counted here.

    python tests/mutation_summary.py                # the table and every surviving mutant
    python tests/mutation_summary.py --sample 80    # a seeded sample of mutant names per file, for `mutmut run`
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

MUTANTS = Path("mutants")
SOURCE = Path("storage/analysis")

# mutmut's exit codes (mutmut.stats.status_by_exit_code)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}

# helper -> positions (and keywords) of its arguments that only name things in error messages
MESSAGE_ARGS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "frame": ((2,), ("what",)),
    "check_labels": ((3,), ("what",)),
    "check_unique": ((2, 3), ("what", "hint")),
    "as_float_array": ((1,), ("what",)),
    "binary_labels": ((1,), ("what",)),
}
_NAME = re.compile(r"^(?P<func>x_.+|xǁ.+)__mutmut_(?P<id>orig|\d+)$")


class _Blank(ast.NodeTransformer):
    """Blanks out what can only reach an error message."""

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        return ast.Raise(exc=ast.Constant("<message>"), cause=None)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name in MESSAGE_ARGS:
            positions, keywords = MESSAGE_ARGS[name]
            for i in positions:
                if i < len(node.args) and isinstance(node.args[i], ast.Constant):
                    node.args[i] = ast.Constant("<message>")
            for kw in node.keywords:
                if kw.arg in keywords and isinstance(kw.value, ast.Constant):
                    kw.value = ast.Constant("<message>")
        return node


def _shape(fn: ast.FunctionDef) -> str:
    fn = copy.deepcopy(fn)
    fn.name = "f"
    return ast.dump(_Blank().visit(fn))


def message_only(mutated_file: Path) -> set[str]:
    """Names (``x_f__mutmut_3``) of the mutants in `mutated_file` that only change error-message text."""
    by_func: dict[str, dict[str, ast.FunctionDef]] = {}
    for node in ast.walk(ast.parse(mutated_file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and (m := _NAME.match(node.name)):
            by_func.setdefault(m["func"], {})[m["id"]] = node
    out = set()
    for func, versions in by_func.items():
        orig = _shape(versions["orig"])
        out |= {f"{func}__mutmut_{i}" for i, fn in versions.items() if i != "orig" and _shape(fn) == orig}
    return out


def results() -> dict[str, dict[str, tuple[str, bool]]]:
    """file -> mutant key -> (status, message_only)."""
    out: dict[str, dict[str, tuple[str, bool]]] = {}
    for meta in sorted((MUTANTS / SOURCE).glob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        msg = message_only(meta.with_suffix(""))
        out[meta.name.removesuffix(".meta")] = {
            key: (STATUS.get(code, "suspicious"), key.rpartition(".")[2] in msg) for key, code in codes.items()}
    return out


def summary(res: dict[str, dict[str, tuple[str, bool]]], names: set[str] | None = None) -> list[str]:
    lines = [f"{'file':<20} {'mutants':>7} {'message':>7} {'counted':>7} {'killed':>6} {'timeout':>7} "
             f"{'survived':>8} {'other':>5} {'killed %':>8}"]
    total: Counter[str] = Counter()
    survivors = []
    for file, muts in res.items():
        c: Counter[str] = Counter()
        for key, (status, msg) in muts.items():
            if names is not None and key not in names:
                continue
            c["mutants"] += 1
            if msg:
                c["message"] += 1
                continue
            c["counted"] += 1
            c[status if status in ("killed", "timeout", "survived") else "other"] += 1
            if status not in ("killed", "not checked"):
                survivors.append(f"  {status:<11} {key}")
        total.update(c)
        lines.append(_row(file, c))
    lines.append(_row("all", total))
    if survivors:
        lines += ["", "not killed (message-only mutants left out):", *survivors]
    return lines


def _row(name: str, c: Counter[str]) -> str:
    done = c["killed"] + c["timeout"] + c["survived"] + c["other"]
    pct = f"{100 * (c['killed'] + c['timeout']) / done:.1f}" if done else "-"
    return (f"{name:<20} {c['mutants']:>7} {c['message']:>7} {c['counted']:>7} {c['killed']:>6} {c['timeout']:>7} "
            f"{c['survived']:>8} {c['other']:>5} {pct:>8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, help="print this many mutant names per file (seeded), not a summary")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--names", type=Path, help="summarise only the mutants named in this file (one per line)")
    args = ap.parse_args()
    if not (MUTANTS / SOURCE).is_dir():
        print("no mutants/ here: run `mutmut run` (or `make mutation`) first", file=sys.stderr)
        return 1
    res = results()
    if args.sample:
        rng = random.Random(args.seed)
        for muts in res.values():
            keys = sorted(k for k, (_, msg) in muts.items() if not msg)
            print("\n".join(sorted(rng.sample(keys, min(args.sample, len(keys))))))
        return 0
    names = set(args.names.read_text(encoding="utf-8").split()) if args.names else None
    print("\n".join(summary(res, names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
