"""Simulator throughput (events/s) at about 1M and 10M events per day, on this machine."""

import tempfile
from pathlib import Path

from bench import write_result
from twotower.core.config import load_settings
from twotower.research.simulate import simulate
from twotower.core.workspace import Workspace

# About 38 events per user-day with the default policy (3 requests x 12 candidates + clicks).
SIZES = {"1M": (26_000, 10_000), "10M": (260_000, 100_000)}


def main() -> None:
    runs = {}
    for label, (users, items) in SIZES.items():
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(workspace=Path(tmp) / "ws")
            s = simulate(settings, Workspace(settings.workspace), users=users, items=items, days=1, seed=0)
            runs[label] = {
                "users": users,
                "items": items,
                "events": s.events,
                "seconds": round(s.seconds, 2),
                "events_per_second": round(s.events_per_second),
            }
            print(label, runs[label])
    write_result("simulate", {"target": "10M events/day well under a minute on 2 cores", "runs": runs})


if __name__ == "__main__":
    main()
