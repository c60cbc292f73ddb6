"""The package layout holds: every package stands on the ones below it, with no import circle anywhere.

Walks every module's imports with `ast` (at the top and inside functions), so a circle hidden in a function
body fails too, and so does one through `importlib.import_module("...")`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT

# Bottom to top: a package may import only the ones before it (and itself). The web app (`chakor_web`,
# in frontend/) talks to the backend over HTTP only, so it stands on the foundation alone.
LAYERS = (
    "common",
    "documents",
    "trainer",
    "converter",
    "evaluation",
    "backend",
    "chakor_web",
    "chakor",
    "benchmarks",
)
PACKAGE_DIRS = {name: REPO_ROOT / name for name in LAYERS} | {
    "chakor_web": REPO_ROOT / "frontend" / "chakor_web"
}
ALLOWED_BELOW = {"chakor_web": {"common"}}


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str  # module name
    path: Path
    line: int


def module_name(path: Path) -> str:
    root = REPO_ROOT / "frontend" if path.is_relative_to(REPO_ROOT / "frontend") else REPO_ROOT
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    return module.split(".")[0]


def modules() -> Iterator[Path]:
    for directory in PACKAGE_DIRS.values():
        yield from sorted(p for p in directory.rglob("*.py") if "/.web/" not in str(p))


def imports_of(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                targets = [".".join([*base, *([node.module] if node.module else [])])]
            else:
                targets = [str(node.module)]
            targets += [f"{targets[0]}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        for target in targets:
            if package_of(target) in PACKAGE_DIRS:
                yield Import(name, target, path, node.lineno)


def project_modules() -> set[str]:
    return {module_name(path) for path in modules()}


def edges() -> list[Import]:
    known = project_modules()
    found = []
    for path in modules():
        for edge in imports_of(path):
            # `from pkg import name` names a module only when pkg.name is one.
            while edge.imported not in known and "." in edge.imported:
                edge = Import(edge.importer, edge.imported.rsplit(".", 1)[0], edge.path, edge.line)
            if edge.imported in known and edge.imported != edge.importer:
                found.append(edge)
    return found


def where(edge: Import) -> str:
    return f"{edge.path.relative_to(REPO_ROOT)}:{edge.line} imports {edge.imported}"


def test_the_foundation_imports_nothing_of_ours() -> None:
    upward = {
        where(e) for e in edges() if package_of(e.importer) == "common" and package_of(e.imported) != "common"
    }
    assert sorted(upward) == []


def test_no_package_imports_one_above_it() -> None:
    rank = {name: index for index, name in enumerate(LAYERS)}
    wrong = set()
    for edge in edges():
        importer, imported = package_of(edge.importer), package_of(edge.imported)
        allowed = ALLOWED_BELOW.get(importer)
        if rank[imported] > rank[importer] or (allowed is not None and imported not in allowed | {importer}):
            wrong.add(where(edge))
    assert sorted(wrong) == []


def test_no_import_circle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for edge in edges():
        graph.setdefault(edge.importer, set()).add(edge.imported)
    # Package `__init__` modules import their own submodules and are imported by them for their names;
    # only edges that leave a package's own `__init__` count for a circle.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package importing its own submodule
                continue
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start)
    assert cycles == []


def explained(lines: list[str], line: int) -> bool:
    """A comment on the import's line, or on the line above the run of imports it belongs to."""
    if "#" in lines[line - 1]:
        return True
    above = line - 2
    while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def function_level_imports(path: Path) -> Iterator[tuple[int, bool]]:
    """(line, commented) of every import inside a function body, of any module."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    yield node.lineno, explained(lines, node.lineno)


def test_imports_sit_at_the_top_unless_a_comment_says_why() -> None:
    hidden = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in modules()
        for line, commented in function_level_imports(path)
        if not commented
    ]
    assert hidden == []
