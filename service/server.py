"""`rescale serve`: uvicorn with one drain budget.

On SIGTERM uvicorn stops accepting and waits for in-flight requests; the app is told at
once, so the batcher lets every accepted request finish its model work and, when RESCALE_DRAIN_TIMEOUT_S has passed,
answers every request still waiting with a clean 503 `shutting_down` (uvicorn would
otherwise cancel them into 500s). uvicorn's own timeout is that budget plus a margin for
those answers to go out; the workers are then stopped without a second wait.
"""

import uvicorn
from fastapi import FastAPI

from service.logs import log_config
from service.main import create_app
from service.settings import Settings

ANSWER_MARGIN_S = 2  # for the 503s sent at the drain deadline to reach their clients


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame) -> None:
        runtime = getattr(self.app.state, "runtime", None)
        if runtime is not None:
            runtime.begin_drain()
        super().handle_exit(sig, frame)


def server(settings: Settings, *, host: str | None = None, port: int | None = None) -> DrainingServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, settings.log_format),
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + ANSWER_MARGIN_S,
    )
    return DrainingServer(config, app)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    server(settings, host=host, port=port).run()
