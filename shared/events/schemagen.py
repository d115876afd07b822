"""`python -m shared.events.schemagen`: writes the JSON Schema of every event's data from the models.

The models are the source of truth; the committed files are what other teams read, and a test fails when
the two drift apart.
"""

import json
from pathlib import Path

from shared.events.envelope import json_schema
from shared.events.models import EVENT_TYPES

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def rendered() -> dict[Path, str]:
    return {
        SCHEMA_DIR / f"{event_type}.json": json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n"
        for event_type, model in EVENT_TYPES.items()
    }


if __name__ == "__main__":
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path}")
