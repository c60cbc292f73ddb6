"""`python -m chakor` runs the CLI."""

from chakor.cli import app

app()
