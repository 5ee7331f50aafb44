"""The shape of the code, held by a test: imports flow one way, SQL lives in the ledger.

ARCHITECTURE.md explains the stages; this test keeps them honest. It reads every module
under ``src/digest_mail/`` with :mod:`ast` (nothing is imported), so a function-level
import or one under ``if TYPE_CHECKING:`` counts like any other: an import circle is
still a circle when it is postponed.

- Every module has a rank (``RANKS``); it may import its own package and packages of a
  strictly lower rank. That rules out circles between packages and any upward import
  (the ledger never loads the SMTP client, the message builder never loads the renderer).
- No circle between modules either, whatever their ranks.
- ``execute(`` appears only in ``digest_mail/ledger/``.
- No module past 500 lines unless its docstring says why, in a paragraph beginning
  ``Long on purpose:``.
- ARCHITECTURE.md's table names every module, and only modules that exist.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "digest_mail"
MAX_LINES = 500

# Lowest first. The most specific prefix wins: a leaf module may rank below its package.
RANKS: dict[str, int] = {
    "digest_mail.errors": 0,
    "digest_mail.files": 0,
    "digest_mail.eventloop": 0,
    "digest_mail.text": 0,
    "digest_mail.audience.addresses": 0,
    "digest_mail.transport.wire": 0,
    "digest_mail.config": 1,
    "digest_mail.ledger": 2,
    "digest_mail.transport": 2,
    "digest_mail.content": 2,
    "digest_mail.audience": 3,
    "digest_mail.mail": 3,
    "digest_mail.render": 4,
    "digest_mail.delivery": 5,
    "digest_mail.review": 6,
    "digest_mail.schedule": 7,
    "digest_mail.cli": 8,
    "digest_mail.__main__": 9,
    "digest_mail": 0,  # the package itself: its version and the error base
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The digest_mail modules an import statement loads (a package's names included)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                yield alias.name
        return
    if node.level:
        base = importer.split(".")
        is_package = MODULES[importer].name == "__init__.py"
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return
    for alias in node.names:
        submodule = f"{target}.{alias.name}"
        yield submodule if submodule in MODULES else target


def imports() -> dict[str, set[str]]:
    """Every module → the digest_mail modules it imports, wherever the import stands."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in _resolve(name, node)
            if target != name
        }
    return graph


def rank(module: str) -> int:
    prefix = max((p for p in RANKS if module == p or module.startswith(p + ".")), key=len)
    return RANKS[prefix]


def package_of(module: str) -> str:
    """``digest_mail.delivery.sender`` → ``digest_mail.delivery``; top-level modules are
    their own package."""
    parts = module.split(".")
    if len(parts) > 2 or MODULES.get(module, Path()).name == "__init__.py":
        return ".".join(parts[:2])
    return module


def violations() -> set[tuple[str, str]]:
    found = set()
    for importer, targets in imports().items():
        for target in targets:
            if package_of(importer) == package_of(target) and rank(importer) >= rank(target):
                continue  # inside one package, but a leaf (rank 0) never reaches its package
            if rank(target) < rank(importer) or rank(importer) == rank(target) == 0:
                continue  # downward, or one base leaf using another
            found.add((importer, target))
    return found


def test_imports_flow_one_way() -> None:
    found = sorted(violations())
    assert not found, "upward or sideways imports (see RANKS and ARCHITECTURE.md):\n" + "\n".join(
        f"  {a} → {b} (rank {rank(a)} → {rank(b)})" for a, b in found
    )


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The import circles: strongly connected groups of modules (Tarjan, iteratively).

    A package's ``__init__`` is loaded by every import of its modules; that is no edge
    back, so edges from a module to its own ancestors are left out.
    """
    graph = {
        m: {t for t in ts if t in graph and not m.startswith(t + ".")} for m, ts in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.add(frozenset(group))
    return found


def test_no_import_circle() -> None:
    found = [sorted(c) for c in circles(imports())]
    assert not found, "import circles: " + "; ".join(" ⇄ ".join(c) for c in found)


def test_sql_lives_in_the_ledger() -> None:
    found = sorted(
        name
        for name, path in MODULES.items()
        if "execute(" in path.read_text(encoding="utf-8")
        and not name.startswith("digest_mail.ledger")
    )
    assert found == [], "SQL outside ledger/: put it in the ledger module of its table"


def test_modules_stay_short_or_say_why() -> None:
    long = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and "Long on purpose:" not in docstring:
            long.append(f"{name} ({lines} lines)")
    assert long == [], f"over {MAX_LINES} lines with no 'Long on purpose:' paragraph"


def test_the_map_names_every_module() -> None:
    """ARCHITECTURE.md's table lists each folder's modules: none missing, none stale."""
    text = (SRC.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set()
    for row in text.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or not cells[1].strip().startswith("`"):
            continue
        folder = cells[1].strip().strip("`").rstrip("/") if cells[1].strip().endswith("/`") else ""
        for name in re.findall(r"`([a-z][a-z_]*\.py)`", row):
            named.add(f"{folder}/{name}" if folder else name)
    on_disk = {
        str(path.relative_to(SRC / PACKAGE))
        for path in (SRC / PACKAGE).rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    }
    assert sorted(on_disk - named) == [], "modules missing from ARCHITECTURE.md's table"
    assert sorted(named - on_disk) == [], "ARCHITECTURE.md names modules that do not exist"
