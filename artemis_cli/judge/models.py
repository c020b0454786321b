"""Judge models that outlive nothing: what we know of hosted judges' retirement, and what to say about it.

Published protocols name hosted judges that disappear: the Artemis / Video-ChatGPT QA protocol used
``gpt-3.5-turbo``, VideoRefer-Bench-D ``gpt-4o-2024-08-06``, lmms-eval ``gpt-4o-2024-11-20``. A retired
default would make `artemis judge gpt` fail for everyone on one day, so there is no default model: the
user names one (``--model`` or ``ARTEMIS_JUDGE_MODEL``), and this table only warns.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

# OpenAI's deprecation dates, by secondary sources (copies of its deprecations page, December 2026).
RETIREMENTS: dict[str, dt.date] = {
    "gpt-3.5-turbo": dt.date(2026, 10, 23),
    "gpt-3.5-turbo-0125": dt.date(2026, 10, 23),
    "gpt-4o-2024-08-06": dt.date(2027, 1, 14),
    "gpt-4o-2024-11-20": dt.date(2027, 1, 14),
}
SOON = dt.timedelta(days=90)
MODEL_ENV = "ARTEMIS_JUDGE_MODEL"
CHOOSE_HINT = (f"name the judge with --model (or {MODEL_ENV}): a dated snapshot your endpoint serves, or an "
               "open-weight judge behind --base-url (vLLM, llama.cpp, Ollama; see the README); compare two judges "
               "on the same predictions with `artemis judge compare`")


def retirement(model: str, today: Optional[dt.date] = None) -> Optional[str]:
    """"retired on D" / "retires on D" for a model in `RETIREMENTS` (past or within 90 days), else None."""
    day = RETIREMENTS.get(model)
    today = today or dt.date.today()
    if day is None or day - today > SOON:
        return None
    return f"retired on {day.isoformat()}" if day <= today else f"retires on {day.isoformat()}"


def model_gone_message(model: str, endpoint: str, detail: str) -> str:
    """The one-line error for a ``model_not_found`` reply."""
    known = RETIREMENTS.get(model)
    why = f" (by OpenAI's deprecations page it left the API on {known.isoformat()})" if known else ""
    return f"judge model {model!r} is not served by {endpoint}{why}: {' '.join(detail.split())}"
