"""Reflex configuration for the Chakor web app (offline: no telemetry, no sitemap, no external assets).

The event WebSocket accepts only the app's own origins (Reflex's default is `*`: any page on the web
could open a socket with the visitor's cookie and drive their session).
"""

import os
from urllib.parse import urlsplit

import reflex as rx

from common.hosts import is_loopback
from common.settings import Settings, get_settings


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def app_origins(settings: Settings, api_url: str | None) -> list[str]:
    """Where the app's pages are served from: its own address (also as `localhost` when it listens on
    loopback), the public address its page opens the event socket at (REFLEX_API_URL, e.g. nginx's),
    and CHAKOR_CORS_ORIGINS (the app's public origins, also the API's allowed ones)."""
    own = [settings.frontend_url]
    if is_loopback(settings.frontend_host):
        own += [f"http://localhost:{settings.frontend_port}", f"http://127.0.0.1:{settings.frontend_port}"]
    public = [_origin(api_url)] if api_url else []
    return list(dict.fromkeys([*own, *public, *(_origin(o) for o in settings.cors_origins)]))


config = rx.Config(
    app_name="chakor_web",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    cors_allowed_origins=app_origins(get_settings(), os.environ.get("REFLEX_API_URL")),
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="teal", radius="medium"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
