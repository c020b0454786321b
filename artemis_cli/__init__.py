"""artemis: install, run and evaluate the Artemis video-referring model end to end."""

__version__ = "0.1.0"
