"""Check how pacer's modules hang together: no import cycle, no private name read from
another module, no function longer than 80 lines.

    python scripts/architecture.py [PACKAGE_DIR]

- **Imports** are every ``import`` and ``from ... import`` of a pacer module, wherever
  it stands (inside a function too: an import put there to dodge a cycle is still a
  cycle), except those under ``if TYPE_CHECKING:``, which never run. A cycle is a
  strongly connected group of two or more modules.
- **Private reads**: ``from .mod import _name``, and ``obj._name`` where no class or
  function of the same module defines ``_name`` (as ``self._name = ...``, a method, a
  class attribute or a ``__slots__`` entry): an attribute another module owns.
  Private *modules* (``pacer._core``) are the package's own business: importing them
  from inside ``pacer`` is how the package is built.
- **Long functions**: more than 80 lines, decorators excluded.
- **Layers** (``LAYERS``, docs/design.md draws them): a module imports only modules of
  its own layer or of the layers below; every module has a layer.

Prints what it finds, and exits 1 if anything is found. ``tests/test_complexity.py``
runs the same checks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_LINES = 80

#: pacer's layers, lowest first: (name, modules without the ``pacer.`` prefix).
LAYERS: list[tuple[str, str]] = [
    ("core", "_core _metrics _chunk _control clock _args _build _text _aio _logs _server_extra"),
    (
        "stages",
        "_detokenize tokenizers _cleanup _sentences _breaks _marks _markdown _punkt _pacing _units _arrival "
        "_packets guard patterns _heard traces",
    ),
    ("drivers", "_run _hub mux _simulate _streamer _checks _driver"),
    ("config", "config upstreams"),
    (
        "transport",
        "_writer _events _eventpacer formats formats.base formats.text formats.choices formats.responses "
        "formats.messages formats.splice _continue resumable streamlog redislog adapters _compress sse "
        "_errors _outcome _shown _refine _drain _controlchannel _paces",
    ),
    ("HTTP", "proxy failover server streamroutes websocket prometheus _cors _replays _clients _connections"),
    ("apps", "cli client _playground __main__ testing"),
]


def modules(package: Path) -> dict[str, Path]:
    """Each module of ``package`` by dotted name (``pacer.formats.base``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
        ):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The pacer modules ``name`` imports at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, node.module] if node.module else up)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}"
                elif base in known and node.module:
                    yield base


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _defined_here(tree: ast.AST) -> set[str]:
    """The private names a module defines for its own objects."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # a __slots__ entry (or a string naming one)
    return names


def private_reads(path: Path) -> Iterator[str]:
    """Where ``path`` reads a private name some other module owns."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _defined_here(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:  # (``from . import _mod``: a module)
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"{path.name}:{node.lineno} imports {alias.name} from {node.module}"
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr.startswith("_") and not attr.startswith("__") and attr not in own:
                yield f"{path.name}:{node.lineno} reads .{attr}"


def long_functions(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                yield f"{path.name}:{node.lineno} {node.name} is {lines} lines"


def layer_of(module: str) -> int | None:
    """The index in ``LAYERS`` of a dotted module name (``pacer.testing.*`` is ``testing``'s)."""
    name = module.removeprefix("pacer.")
    for index, (_, names) in enumerate(LAYERS):
        members = names.split()
        if name in members or (name.startswith("testing.") and "testing" in members):
            return index
    return None


def layer_problems(graph: dict[str, set[str]]) -> Iterator[str]:
    """Modules without a layer, and imports that go up a layer."""
    for module in sorted(graph):
        if module == "pacer":
            continue
        here = layer_of(module)
        if here is None:
            yield f"{module} has no layer (scripts/architecture.py LAYERS)"
            continue
        for target in sorted(graph[module] - {"pacer"}):
            there = layer_of(target)
            if there is not None and there > here:
                yield f"{module} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]}), a layer above"


def problems(package: Path) -> list[str]:
    known = modules(package)
    graph = {name: set(imports(name, path, known)) - {name} for name, path in known.items()}
    found = [f"import cycle: {' <-> '.join(group)}" for group in cycles(graph)]
    found += list(layer_problems(graph))
    for path in known.values():
        found += list(private_reads(path))
        found += list(long_functions(path))
    return found


def main(argv: list[str]) -> int:
    package = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "pacer"
    found = problems(package)
    print(
        "\n".join(found)
        if found
        else "no import cycle, no import up a layer, no private read across modules, no long function"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
