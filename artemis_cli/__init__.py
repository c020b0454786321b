"""artemis: install, run and evaluate the Artemis video-referring model end to end."""

import time

__version__ = "0.1.0"

# When this package was first imported: for the console script, the start of the process's own work,
# so a command's "start-up" time covers its imports (torch, transformers) as well as the model load.
STARTED = time.perf_counter()
