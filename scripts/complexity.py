"""Count what makes code hard to hold in one's head: fields per class, decision points per function.

    python scripts/complexity.py [--max-fields 12] [--max-decisions 19] [PATH ...]

A class's fields are the distinct ``self.NAME`` it assigns in its own methods (not
its bases'), plus the names in its ``__slots__``. A function's decision points are
counted as McCabe does: each ``if``/``elif``, conditional expression, loop,
``except``, ``case``, comprehension ``for`` and ``if``, and each extra operand of an
``and``/``or``; a nested function counts on its own, not in its parent's total.

Prints the classes and functions over the limits (or the three largest of each
where none is), and exits 1 if any is over. The limits are issue #19's: h11's
``Connection`` has 11 fields; h11, wsproto, aiostream and Starlette have no
function with 20 decision points.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

_BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.match_case)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def decisions(function: ast.AST) -> int:
    """McCabe decision points of ``function``'s own body (nested functions and classes excluded)."""
    count = 0
    todo = list(ast.iter_child_nodes(function))
    while todo:
        node = todo.pop()
        if isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            continue
        if isinstance(node, _BRANCHES):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += 1 + len(node.ifs)
        todo.extend(ast.iter_child_nodes(node))
    return count


def fields(cls: ast.ClassDef) -> set[str]:
    """The attributes ``cls``'s own methods assign on ``self``, and its ``__slots__``."""
    names: set[str] = set()
    for item in cls.body:
        if isinstance(item, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets
        ):
            value = item.value
            if isinstance(value, (ast.Tuple, ast.List)):
                names.update(e.value for e in value.elts if isinstance(e, ast.Constant))
        if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) or not item.args.args:
            continue
        me = item.args.args[0].arg
        for node in ast.walk(item):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id == me
                        and isinstance(sub.ctx, ast.Store)
                    ):
                        names.add(sub.attr)
    return names


def walk(path: Path) -> Iterator[tuple[str, str, int, int]]:
    """(kind, "file:line name", count) for every class ("fields") and function ("decisions")."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield "fields", f"{path}:{node.lineno} {node.name}", len(fields(node)), node.lineno
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield "decisions", f"{path}:{node.lineno} {node.name}", decisions(node), node.lineno


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=["pacer"])
    parser.add_argument("--max-fields", type=int, default=12)
    parser.add_argument("--max-decisions", type=int, default=19)
    args = parser.parse_args(argv)
    files = sorted(f for p in map(Path, args.paths) for f in (p.rglob("*.py") if p.is_dir() else [p]))
    rows = [row for f in files for row in walk(f)]
    limits = {"fields": args.max_fields, "decisions": args.max_decisions}
    over = 0
    for kind in ("fields", "decisions"):
        mine = sorted((r for r in rows if r[0] == kind), key=lambda r: -r[2])
        bad = [r for r in mine if r[2] > limits[kind]]
        over += len(bad)
        top = bad if bad else mine[:3]
        print(f"{kind}: {len(bad)} over {limits[kind]} in {len(mine)} ({'worst' if not bad else 'over'}:)")
        for _, where, count, _ in top:
            print(f"  {count:3d}  {where}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
