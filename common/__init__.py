"""The ground floor every other package stands on; it imports nothing of the project's own.

- `settings`: every `CHAKOR_*` setting,
- `chat`: the one chat contract (format, template, sources, system prompt, prompt fitting),
- `hashing`, `process`, `llama_cpp`: content hashes, managed child processes, llama.cpp's binaries,
- `response_headers`: the ASGI middleware the API and the web app share,
- `cli`: what every `chakor` subcommand shares (settings, console, error handling).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
