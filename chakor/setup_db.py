"""Create `.venv-db` (Python >= 3.13 + mongoeco) for the embedded database sidecar: `python -m chakor.setup_db`."""

from __future__ import annotations

import subprocess
import sys

from chakor.services import DB_VENV, SIDECAR_SCRIPT, find_python313

REQUIREMENTS = SIDECAR_SCRIPT.with_name("requirements.txt")


def main() -> int:
    python = find_python313()
    if python is None:
        print(
            "The embedded database needs Python >= 3.13 and none was found on PATH or under pyenv.\n"
            "Install one (e.g. `pyenv install 3.13` or your distribution's python3.13 package), or point\n"
            "Chakor at a MongoDB you run: CHAKOR_MONGODB_URI=mongodb://HOST:27017",
            file=sys.stderr,
        )
        return 1
    if not (DB_VENV / "bin" / "python").exists():
        subprocess.run([str(python), "-m", "venv", str(DB_VENV)], check=True)
    pip = [str(DB_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    print(f"database sidecar ready: {DB_VENV} ({python})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
