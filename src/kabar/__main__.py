"""``python -m kabar`` runs the CLI (the same as the ``kabar`` console script)."""

from kabar.cli import app

app()
