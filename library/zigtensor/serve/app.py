"""create_app(engine, config): the FastAPI app of `zt serve`. Routes only translate HTTP <-> engine.

    POST /v1/completions        text completion (stream: server-sent events ending with `data: [DONE]`)
    POST /v1/chat/completions   chat, rendered with the model's chat template
    POST /v1/embeddings         encoder models (float or base64)
    GET  /v1/models             the served model; GET /v1/models/{id} one model
    GET  /health                200 once the model is loaded; 503 while it loads or the server shuts down
    GET  /metrics               Prometheus text format (see metrics.py)
    POST /tokenize, /detokenize

Outside the routes, three ASGI middlewares (outermost first): metrics (status and duration of every request),
the API key (when ServeConfig.api_key is set: every route but /health, compared in constant time), and the
body-size limit (413 from Content-Length at once, or as soon as a chunked body passes the limit).

The app may start without an engine (`create_app(None, config)`, then `attach_engine(app, engine)` once the
model is loaded): until then every route but /health and /metrics answers 503. The app owns its engine and
shuts it down when the server stops.
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from . import schemas as s
from .errors import APIError, install_handlers, unavailable
from .metrics import ServerMetrics
from .serving import OpenAIServing, ServeConfig

ROUTES = {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics",
          "/tokenize", "/detokenize"}
OPEN_PATHS = ("/health",)  # reachable without the API key (load balancers, orchestrators)
DRAIN_BYTES = 16 << 20  # an oversized body is read and dropped up to this much, so the client sees the 413


class ServerState:
    """What the routes share: the serving object once the model is loaded, and whether the server drains."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.serving: OpenAIServing | None = None
        self._draining = False

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        if self.serving is not None:
            self.serving.draining = value

    @property
    def engine(self):
        return None if self.serving is None else self.serving.engine

    def attach(self, engine) -> None:
        self.serving = OpenAIServing(engine, self.config)

    def ready(self) -> OpenAIServing:
        """The serving object, or a 503 while the model loads or the server shuts down."""
        if self.draining:
            raise unavailable("the server is shutting down and accepts no new requests")
        if self.serving is None:
            raise unavailable("the model is still loading; retry when GET /health answers 200")
        return self.serving

    async def shutdown(self) -> None:
        self.draining = True
        engine = self.engine
        if engine is not None:
            await engine.shutdown()


def attach_engine(app: FastAPI, engine) -> None:
    """Start serving `engine` (after create_app(None, ...)): /health turns 200."""
    app.state.server.attach(engine)


# ------------------------------------------------------------------------------------------ middlewares
class APIKeyMiddleware:
    """401 unless `Authorization: Bearer <key>` (every path but OPEN_PATHS); the key compared in constant time."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            scheme, _, token = header.partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)):
                error = APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                                 code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                return await error.response()(scope, receive, send)
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """413 for a request body over max_bytes, without ever holding more than max_bytes of it.

    A declared Content-Length over the limit is refused before the body is read; a chunked body is counted as
    it arrives. The rest of an oversized body is read and dropped (up to DRAIN_BYTES), so that the client gets
    the 413 rather than a connection reset while it is still sending.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self, size: str) -> APIError:
        return APIError(413, f"the request body is {size}; this server accepts at most {self.max_bytes} bytes",
                        code="request_too_large")

    @staticmethod
    async def drain(receive, more: bool) -> None:
        dropped = 0
        while more and dropped < DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                return await APIError(400, f"invalid Content-Length {declared.decode(errors='replace')!r}"
                                      ).response()(scope, receive, send)
            if int(declared) > self.max_bytes:
                if int(declared) <= DRAIN_BYTES:
                    await self.drain(receive, True)
                return await self.too_large(f"{int(declared)} bytes").response()(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    await self.drain(receive, message.get("more_body", False))
                    raise self.too_large(f"over {self.max_bytes} bytes")  # -> the APIError handler: a 413
            return message

        await self.app(scope, limited_receive, send)


# ------------------------------------------------------------------------------------------------ app
def create_app(engine=None, config: ServeConfig | None = None) -> FastAPI:
    """The app serving `engine` (None: attach it later with attach_engine) as config says."""
    config = config or ServeConfig()
    state = ServerState(config)
    if engine is not None:
        state.attach(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await state.shutdown()

    app = FastAPI(title="zigtensor", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    metrics = ServerMetrics(lambda: state.engine, ROUTES)
    install_handlers(app)
    # NOTE: add_middleware puts each new one outside the previous: the body limit runs innermost, metrics first
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.api_key is not None:
        app.add_middleware(APIKeyMiddleware, api_key=config.api_key)
    app.add_middleware(metrics.middleware)

    @app.get("/health")
    async def health():
        engine = state.engine
        if state.draining:
            return unavailable("the server is shutting down").response()
        if engine is None:
            return unavailable("the model is loading").response()
        if not engine.health():
            return unavailable("the engine has stopped").response()
        return {"status": "ok", "model": state.serving.model_name}

    @app.get("/metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models():
        return JSONResponse(s.ModelList(data=[state.ready().model_card()]).model_dump(mode="json"))

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        serving = state.ready()
        serving.check_model(model_id)
        return JSONResponse(serving.model_card().model_dump(mode="json"))

    @app.post("/v1/completions")
    async def completions(request: Request):
        serving = state.ready()
        return await serving.completions(s.parse(s.CompletionRequest, await request.body()), request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        serving = state.ready()
        return await serving.chat(s.parse(s.ChatCompletionRequest, await request.body()), request)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        serving = state.ready()
        return await serving.embeddings(s.parse(s.EmbeddingRequest, await request.body()))

    @app.post("/tokenize")
    async def tokenize(request: Request):
        serving = state.ready()
        return serving.tokenize(s.parse(s.TokenizeRequest, await request.body()))

    @app.post("/detokenize")
    async def detokenize(request: Request):
        serving = state.ready()
        return serving.detokenize(s.parse(s.DetokenizeRequest, await request.body()))

    return app
