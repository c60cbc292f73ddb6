"""Built-in corpora that need no download: Python's own documentation and standard-library sources."""

from __future__ import annotations

import inspect
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

from documents.stdlib import DOC_MODULES, import_doc_module, public_members, signature

# Standard-library folders that are tests, tools or vendored data rather than representative code.
SKIPPED_CODE_DIRS = {"test", "tests", "idle_test", "site-packages", "lib2to3", "ensurepip", "__pycache__"}


def python_docs() -> Iterator[str]:
    """pydoc's language-reference topics, then one document per module: its docstring and its members'."""
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
