"""Reflex configuration for the Chakor web app (offline: no telemetry, no sitemap, no external assets)."""

import reflex as rx

config = rx.Config(
    app_name="chakor_web",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="teal", radius="medium"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
