"""Typer commands: one thin module per command group; `app.main` is the console entry point."""
