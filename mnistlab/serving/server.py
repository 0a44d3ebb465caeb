"""The HTTP API and the drawing page (``mnistlab.serving.http_app``) served by uvicorn; the model is loaded once,
before the port opens."""

from __future__ import annotations

from omegaconf import DictConfig

from mnistlab.core.extras import require
from mnistlab.core.fields import validate


def build_app(cfg: DictConfig):  # -> fastapi.FastAPI
    validate(cfg, "serve")
    require("mnistlab-serve", "fastapi", "uvicorn", "multipart", "fastapi_offline")
    import torch

    from mnistlab.serving.http_app import MB, create_app
    from mnistlab.serving.inference import Predictor

    torch.set_num_threads(int(cfg.threads))
    predictor = Predictor(cfg.ckpt_path, cfg.backend, cfg.onnx_path, cfg.preprocess, batch_size=1)
    return create_app(
        predictor,
        int(float(cfg.max_upload_mb) * MB),
        int(cfg.max_image_pixels),
        cfg.backend,
        workers=int(cfg.workers),
        max_decoded_mb=float(cfg.max_decoded_mb),
    )


def serve(cfg: DictConfig) -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn

    from mnistlab.serving.guard import guarded_protocol

    app = build_app(cfg)
    protocol = guarded_protocol(
        float(cfg.idle_timeout_s),
        float(cfg.header_timeout_s),
        float(cfg.body_timeout_s),
        int(cfg.max_connections_per_client),
    )
    print(f"mnistlab: serving {cfg.ckpt_path or cfg.onnx_path} on http://{cfg.host}:{cfg.port}/", flush=True)
    uvicorn.run(
        app,
        host=str(cfg.host),
        port=int(cfg.port),
        log_level=str(cfg.log_level),
        access_log=cfg.access_log,
        limit_concurrency=int(cfg.max_connections),  # beyond it: 503 at once, not an unbounded queue of bodies
        http=protocol,  # slow or idle clients are closed after their deadline; at most N connections per client
        ws="none",  # no websockets here: an upgrade request is answered as plain HTTP, within the same deadlines
    )
