"""Benchmarks (``make bench``): speed and size targets, measured and written as JSON.

Each ``bench/bench_*.py`` is a script that writes ``bench/results/<name>.json``. Targets are
reported beside the measurements, never asserted: a slow machine must not fail a build.
"""

import json
import platform
import time
from pathlib import Path

import twotower  # noqa: F401  (TF_USE_LEGACY_KERAS before any TensorFlow import)
from twotower.core import logs

logs.configure()  # the platform's messages on stderr, dependencies quiet (as the CLI)

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, payload: dict) -> Path:
    """Write one benchmark's results with the machine it ran on."""
    import os

    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # Other work on the machine inflates timings; the load average says how much.
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
    return path
