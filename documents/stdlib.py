"""Python's own standard library as documentation: the modules, members and signatures the document index,
the pretraining corpus (`local:python-docs`) and the SFT sets read, so all of them see the same APIs."""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from collections.abc import Iterator
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


def summary_of(member: object) -> str:
    """One-line docstring summary of a module member (empty when it has none)."""
    doc = inspect.getdoc(member)
    return _summary(doc) if doc else ""
