"""zigtensor.serve: an OpenAI-compatible HTTP server over the engine (FastAPI + uvicorn + prometheus-client).

>>> from zigtensor.engine.llm_runner import load_engine
>>> from zigtensor.serve import ServeConfig, run
>>> run(lambda: load_engine("smollm2"), ServeConfig(api_key="secret"), port=8080)   # what `zt serve` does

Pieces: schemas (request/response models, the unknown-field policy), errors (OpenAI's error shape), serving
(requests -> engine -> responses and server-sent events), metrics (Prometheus), app (create_app: routes and
middlewares), server (uvicorn with a model loaded in the background and a graceful shutdown).
"""

from .app import attach_engine, create_app
from .errors import APIError
from .server import GracefulServer, run, serve
from .serving import OpenAIServing, ServeConfig

__all__ = ["create_app", "attach_engine", "ServeConfig", "OpenAIServing", "APIError", "GracefulServer", "serve",
           "run"]
