"""Online recall serving: online features -> numpy user tower -> Annoy top-k, over HTTP.

See twotower/__init__.py for why every package imports ``twotower`` first. Public API:
``Retriever`` (in-process recall, hot swap), ``create_app`` (FastAPI), ``serve`` (uvicorn).
"""

import twotower  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
