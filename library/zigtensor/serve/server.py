"""Run the app under uvicorn: bind first, load the model while /health answers 503, serve, shut down gracefully.

Shutdown (Ctrl-C, SIGTERM, or GracefulServer.stop() from another thread): uvicorn stops accepting connections
and closes idle ones; requests that still arrive get 503 and /health turns 503; the engine lets the running
requests finish for up to `grace_period` seconds, then aborts the rest (their streams end with an error event
and [DONE]); the engine thread stops and the process exits with status 0. A second Ctrl-C quits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable

import uvicorn

from .app import attach_engine, create_app
from .serving import ServeConfig

logger = logging.getLogger("uvicorn.error")  # NOTE: uvicorn configures this logger; our lines share its format
SHUTDOWN_MARGIN_S = 5.0  # uvicorn cancels what still runs this long after the engine's grace period


class GracefulServer(uvicorn.Server):
    """A uvicorn Server whose first exit signal also starts draining the app's engine (see the module doc)."""

    def __init__(self, app, config: uvicorn.Config, grace_period: float = 30.0):
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {grace_period!r}")
        config.timeout_graceful_shutdown = grace_period + SHUTDOWN_MARGIN_S
        super().__init__(config)
        self.app = app
        self.grace_period = grace_period
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Future | None = None

    async def serve(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig, frame) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first and self.loop is not None:
            self.loop.call_soon_threadsafe(self._start_draining)

    def stop(self) -> None:
        """Shut down as on SIGTERM (thread-safe)."""
        self.handle_exit(signal.SIGTERM, None)

    def _start_draining(self) -> None:
        state = self.app.state.server
        state.draining = True
        if state.engine is not None:
            logger.info("draining: running requests have %.0f s to finish", self.grace_period)
            self._drain = asyncio.ensure_future(state.engine.shutdown(self.grace_period))

    @contextlib.contextmanager
    def capture_signals(self):
        # NOTE: uvicorn's version re-raises the signal once it has shut down, so SIGTERM would end the process
        # with status 143 after a clean shutdown; a graceful exit here is status 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    @property
    def port(self) -> int | None:
        """The port bound (useful with port 0), once started."""
        for server in getattr(self, "servers", []):  # set by uvicorn's startup
            for sock in server.sockets:
                return sock.getsockname()[1]
        return None


def _load_in_thread(load: Callable[[], object]) -> asyncio.Future:
    """Run load() on a daemon thread (a Ctrl-C during a long load must not wait for it); its result as a future."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(set_outcome, value):
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone, nobody waits
            loop.call_soon_threadsafe(lambda: future.done() or set_outcome(value))

    def run():
        try:
            engine = load()
        except BaseException as e:  # noqa: BLE001  (handed to the event loop, which raises it)
            settle(future.set_exception, e)
        else:
            settle(future.set_result, engine)

    threading.Thread(target=run, name="zigtensor-load", daemon=True).start()
    return future


async def serve(load: Callable[[], object], config: ServeConfig | None = None, host: str = "127.0.0.1",
                port: int = 8080, grace_period: float = 30.0, log_level: str = "info") -> None:
    """Serve the engine that load() returns (e.g. zigtensor.engine.llm_runner.load_engine) until shut down.

    The socket is bound first and /health answers 503 until load() returns; if load() fails, the server stops
    and its error is raised.
    """
    app = create_app(None, config or ServeConfig())
    server = GracefulServer(app, uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on"),
                            grace_period)
    loading = _load_in_thread(load)
    serving = asyncio.ensure_future(server.serve())
    await asyncio.wait({loading, serving}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done():
        error = loading.exception()
        if error is not None:
            server.should_exit = True
            await serving
            raise error
        engine = loading.result()
        while not (server.started or serving.done()):  # NOTE: a fast load may finish before the socket is bound
            await asyncio.sleep(0.01)
        if server.should_exit or serving.done():  # a shutdown came while the model loaded
            await engine.shutdown()
        else:
            attach_engine(app, engine)
            logger.info("serving model %r at http://%s:%d/v1", app.state.server.serving.model_name, host,
                        server.port or port)
    else:
        loading.cancel()
    await serving


def run(load: Callable[[], object], config: ServeConfig | None = None, host: str = "127.0.0.1", port: int = 8080,
        grace_period: float = 30.0, log_level: str = "info") -> None:
    """serve() in a new event loop: what `zt serve` calls."""
    asyncio.run(serve(load, config, host, port, grace_period, log_level))
