"""The Documents page: your files for DOCUMENTS search (upload by button or drag and drop, list,
delete) and the site's collections, read-only."""

from __future__ import annotations

import reflex as rx

from chakor_web.components.layout import frame
from chakor_web.state.documents import UPLOAD_ID, DocumentRow, DocumentsState, SiteCollection

ACCEPT = {
    "text/plain": [".txt", ".text", ".rst"],
    "text/markdown": [".md", ".markdown"],
    "text/html": [".html", ".htm"],
    "application/pdf": [".pdf"],
}


def _row(document: DocumentRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(document.name),
        rx.table.cell(document.collection),
        rx.table.cell(document.size),
        rx.table.cell(document.passages),
        rx.table.cell(document.added),
        rx.table.cell(
            rx.button(
                "Delete",
                on_click=DocumentsState.delete(document.id),
                color_scheme="red",
                variant="soft",
                size="1",
                aria_label="Delete " + document.name,
            )
        ),
    )


def _site_row(collection: SiteCollection) -> rx.Component:
    return rx.table.row(
        rx.table.cell(collection.name),
        rx.table.cell(collection.documents),
        rx.table.cell(collection.passages),
    )


def _upload() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.el.label("Collection", html_for="target-collection", class_name="field-label"),
                rx.input(
                    id="target-collection",
                    placeholder="uploads",
                    value=DocumentsState.target_collection,
                    on_change=DocumentsState.set_target_collection,
                    max_length=64,
                    width="16em",
                ),
                rx.text(
                    "New files go to ",
                    rx.code(
                        rx.cond(
                            DocumentsState.target_collection != "",
                            DocumentsState.target_collection,
                            "uploads",
                        )
                    ),
                    size="2",
                    id="target-note",
                ),
                align="center",
            ),
            rx.upload.root(
                rx.vstack(
                    rx.button(rx.icon("upload", size=14), "Choose files", type="button", variant="soft"),
                    rx.text("or drop them here: text, Markdown, HTML or PDF, up to 10 MB each", size="2"),
                    align="center",
                ),
                id=UPLOAD_ID,
                accept=ACCEPT,
                multiple=True,
                on_drop=DocumentsState.upload(
                    rx.upload_files(upload_id=UPLOAD_ID, on_upload_progress=DocumentsState.upload_progress)
                ),
                border="1px dashed var(--gray-7)",
                padding="1.5em",
                width="100%",
                aria_label="Upload documents",
            ),
            rx.cond(
                (DocumentsState.upload_percent >= 0) & (DocumentsState.upload_percent < 100),
                rx.hstack(
                    rx.progress(value=DocumentsState.upload_percent, width="12em"),
                    rx.text("Uploading…", size="2"),
                    align="center",
                    role="status",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _documents_table() -> rx.Component:
    return rx.cond(
        DocumentsState.documents.length() > 0,
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *(
                        rx.table.column_header_cell(name)
                        for name in ("Name", "Collection", "Size", "Passages", "Added (UTC)", "")
                    )
                )
            ),
            rx.table.body(rx.foreach(DocumentsState.documents, _row)),
            aria_label="Your documents",
            width="100%",
        ),
        rx.text("No documents yet.", size="2"),
    )


def _site_table() -> rx.Component:
    return rx.cond(
        DocumentsState.site_collections.length() > 0,
        rx.vstack(
            rx.heading("Site collections", size="4", as_="h2"),
            rx.text("Shared with every user of this server (added by its operator); read-only.", size="2"),
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *(rx.table.column_header_cell(name) for name in ("Collection", "Files", "Passages"))
                    )
                ),
                rx.table.body(rx.foreach(DocumentsState.site_collections, _site_row)),
                aria_label="Site collections",
                width="100%",
            ),
            width="100%",
        ),
    )


def documents_page() -> rx.Component:
    return frame(
        rx.box(
            rx.vstack(
                rx.heading("Documents", size="6", as_="h1"),
                rx.text(
                    "Your files, for chat's Documents search: only you can find them. Each file goes into "
                    "one of your collections.",
                    size="2",
                ),
                rx.cond(
                    DocumentsState.documents_error != "",
                    rx.callout(
                        DocumentsState.documents_error,
                        icon="triangle_alert",
                        color_scheme="red",
                        role="alert",
                    ),
                ),
                rx.cond(
                    DocumentsState.documents_note != "",
                    rx.callout(DocumentsState.documents_note, icon="check", role="status"),
                ),
                _upload(),
                _documents_table(),
                _site_table(),
                spacing="4",
                max_width="56em",
                margin_x="auto",
            ),
            padding="1em",
            width="100%",
        )
    )
