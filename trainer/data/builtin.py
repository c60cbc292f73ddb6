"""Built-in corpora that need no download: Python's own documentation and standard-library sources."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

# Pure-Python standard-library modules with good docstrings and no import side effects.
DOC_MODULES = [
    "abc",
    "argparse",
    "array",
    "base64",
    "bisect",
    "calendar",
    "cmath",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "getopt",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "logging",
    "math",
    "mimetypes",
    "numbers",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "secrets",
    "shlex",
    "shutil",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "sys",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "tomllib",
    "typing",
    "unicodedata",
    "urllib.parse",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
    "zlib",
]

MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

# Standard-library folders that are tests, tools or vendored data rather than representative code.
SKIPPED_CODE_DIRS = {"test", "tests", "idle_test", "site-packages", "lib2to3", "ensurepip", "__pycache__"}


def _summary(doc: str) -> str:
    """The first paragraph of a docstring, on one line."""
    paragraph = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(paragraph.split())


def public_members(module: ModuleType) -> Iterator[tuple[str, object]]:
    """`(name, object)` for the module's documented public functions and classes, sorted by name."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    for name in sorted(set(names)):
        member = getattr(module, name, None)
        if not (inspect.isroutine(member) or inspect.isclass(member)):
            continue
        home = getattr(member, "__module__", None) or module.__name__
        if home.split(".")[0].lstrip("_") != module.__name__.split(".")[0].lstrip("_"):
            continue
        if inspect.getdoc(member):
            yield name, member


def signature(name: str, member: object) -> str:
    """`name(params)` when Python can tell the signature, else `name(...)` (no memory addresses)."""
    try:
        return MEMORY_ADDRESS.sub("", f"{name}{inspect.signature(member)}")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{name}(...)"


def import_doc_module(name: str) -> ModuleType | None:
    """Import a standard-library module quietly (None if this Python lacks it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError:
        return None


def python_docs() -> Iterator[str]:
    """pydoc's language-reference topics, then one document per module: its docstring and its members'."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]
    for module_name in DOC_MODULES:
        module = import_doc_module(module_name)
        if module is None:
            continue
        parts = [f"Module {module_name}\n\n{inspect.getdoc(module) or ''}".rstrip()]
        for name, member in public_members(module):
            parts.append(f"{module_name}.{signature(name, member)}\n\n{inspect.getdoc(member)}")
        yield "\n\n\n".join(parts)


def python_code_files() -> list[Path]:
    """The standard library's `.py` files, sorted, without tests, site-packages and vendored tools."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_CODE_DIRS]
        files.extend(
            Path(folder) / name for name in names if name.endswith(".py") and not name.startswith("test_")
        )
    return sorted(files)


def summary_of(member: object) -> str:
    """One-line docstring summary of a module member (empty when it has none)."""
    doc = inspect.getdoc(member)
    return _summary(doc) if doc else ""
