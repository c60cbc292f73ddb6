"""GraphiQL served from this host: the UMD bundles npm installed at setup and our own page, never a CDN."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template

from starlette.responses import FileResponse, HTMLResponse, Response

from backend.core.headers import PLAYGROUND_POLICY

log = logging.getLogger("chakor.backend")
PAGES = Path(__file__).with_name("graphiql")
# What /graphql/static/ serves: file name -> path under the assets folder (frontend/setup.sh pins them).
VENDORED = {
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "graphiql.min.css": "graphiql/graphiql.min.css",
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
}
OWN = ("playground.js", "playground.css")
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}


@dataclass(frozen=True)
class Playground:
    """The GraphiQL page and its files, from `assets_dir` (CHAKOR_GRAPHIQL_ASSETS_DIR)."""

    assets_dir: Path

    def missing(self) -> list[str]:
        """Vendored files that are not installed."""
        return [rel for rel in VENDORED.values() if not (self.assets_dir / rel).is_file()]

    def warn_if_missing(self) -> None:
        """Log (once, at start-up) that the playground cannot work and how to fix it."""
        if missing := self.missing():
            log.warning(
                "GraphiQL assets missing in %s (%s): /graphql shows a notice instead of the playground; "
                "run `bash frontend/setup.sh` (npm install) and restart",
                self.assets_dir,
                ", ".join(missing),
            )

    def page(self, path: str) -> HTMLResponse:
        """The playground for a page at `path` (its files under `path`/static), or 503 naming what is missing."""
        headers = {"Content-Security-Policy": PLAYGROUND_POLICY}
        if missing := self.missing():
            html = _template("unavailable.html").substitute(
                assets_dir=escape(str(self.assets_dir)), missing=escape(", ".join(missing))
            )
            return HTMLResponse(html, status_code=503, headers=headers)
        static = escape(path.rstrip("/") + "/static", quote=True)
        return HTMLResponse(_template("index.html").substitute(static=static), headers=headers)

    def asset(self, name: str) -> Response:
        """One file of the page, by name; anything else is a 404."""
        if name in VENDORED:
            path = self.assets_dir / VENDORED[name]
        elif name in OWN:
            path = PAGES / name
        else:
            return Response("not found", status_code=404, media_type="text/plain")
        if not path.is_file():
            return Response("not installed", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])


def _template(name: str) -> Template:
    return Template((PAGES / name).read_text(encoding="utf-8"))
