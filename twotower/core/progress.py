"""One progress bar per long step, on a terminal only.

``progress(description, total)`` gives a ``tqdm`` bar on stderr when stderr is a terminal and
the platform's messages are on (the CLI turns them on; ``-v`` or not), and a silent stand-in
otherwise: logs, pipes and tests get the step's summary line (``logging``), not a line per 10%.
"""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm


def showing() -> bool:
    return sys.stderr.isatty() and logging.getLogger("twotower").isEnabledFor(logging.INFO)


def progress(description: str, total: int | None = None, unit: str = "it") -> tqdm:
    """``with progress("index: adding items", n) as bar: ... bar.update(k)``."""
    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr,
                disable=not showing(), leave=False, mininterval=0.5, dynamic_ncols=True)  # fmt: skip
