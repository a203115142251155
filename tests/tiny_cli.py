"""``python -m aeclust`` with one more named model, ``tiny``, small enough for tests to train in seconds.

Tests that need a real process (to kill it, say) run this file instead of ``python -m aeclust``; the
command line, run directory and resume logic are aeclust's own.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import tiny_config  # noqa: E402

from aeclust.cli import main  # noqa: E402
from aeclust.config import RunConfig  # noqa: E402
from aeclust.presets import MODELS  # noqa: E402

TINY_EPOCHS = 3


def tiny_preset() -> RunConfig:
    return tiny_config(epochs=TINY_EPOCHS)


if __name__ == "__main__":
    MODELS["tiny"] = tiny_preset
    sys.exit(main())
