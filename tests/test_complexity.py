"""No class in ``pacer/`` holds more than 12 fields and no function has 20 or more
decision points (``scripts/complexity.py``): the limits issue #19 set, after h11's
``Connection`` (11 fields) and h11, wsproto, aiostream and Starlette (no function
with 20 decision points)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _complexity() -> object:
    spec = importlib.util.spec_from_file_location("complexity", ROOT / "scripts" / "complexity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_new_class_or_function_over_the_limits() -> None:
    complexity = _complexity()
    limits = {"fields": 12, "decisions": 19}
    over = set()
    for path in sorted((ROOT / "pacer").rglob("*.py")):
        for kind, where, count, _ in complexity.walk(path):  # type: ignore[attr-defined]
            if count > limits[kind]:
                over.add((kind, path.name, where.rsplit(" ", 1)[1]))
    assert not over, f"over the limits: {sorted(over)}"


def test_the_counts_are_counted_as_mccabe_and_fields_as_assignments() -> None:
    import ast

    complexity = _complexity()
    tree = ast.parse(
        "class A:\n"
        "    __slots__ = ('s',)\n"
        "    def __init__(self):\n"
        "        self.a = 1\n"
        "        self.b, self.c = 2, 3\n"
        "    def f(self, x):\n"
        "        self.a += 1\n"
        "        if x and x > 1 or x < -1:\n"
        "            return [y for y in x if y]\n"
        "        while x:\n"
        "            x = None if x else x\n"
    )
    cls = tree.body[0]
    assert complexity.fields(cls) == {"s", "a", "b", "c"}  # type: ignore[attr-defined]
    # if, and, or, comprehension for and its if, while, conditional expression
    assert complexity.decisions(cls.body[2]) == 7  # type: ignore[attr-defined,attr-defined]


def test_no_import_cycle_no_import_up_a_layer_no_private_read_no_long_function() -> None:
    """Issue #36's shape of the package (``scripts/architecture.py``): imports inside
    functions count, ``TYPE_CHECKING`` ones do not; the layers are docs/design.md's."""
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    assert spec is not None and spec.loader is not None
    architecture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(architecture)
    assert architecture.problems(ROOT / "pacer") == []


def test_the_architecture_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    assert spec is not None and spec.loader is not None
    architecture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(architecture)
    package = tmp_path / "pacer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_core.py").write_text("def f():\n    from .proxy import g\n    return g\n")
    (package / "proxy.py").write_text(
        "from ._core import f\nfrom .server import _secret\n\ndef g(x):\n    return x._hidden\n"
        + "\ndef long():\n"
        + "    pass\n" * 81
    )
    found = "\n".join(architecture.problems(package))
    assert "import cycle: pacer._core <-> pacer.proxy" in found
    assert "pacer._core (core) imports pacer.proxy (HTTP), a layer above" in found
    assert "imports _secret from server" in found and "reads ._hidden" in found
    assert "long is 82 lines" in found
