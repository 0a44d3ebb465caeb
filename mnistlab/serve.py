"""``python -m mnistlab.serve ckpt_path=… port=8000``: the HTTP API and the drawing page (see ``mnistlab.api``),
served by uvicorn. The model is loaded once, before the port opens."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnistlab.config import CONFIG_DIR
from mnistlab.errors import ConfigError, MnistlabError, exit_with


def build_app(cfg: DictConfig):  # -> fastapi.FastAPI
    import torch

    from mnistlab.api import MB, create_app
    from mnistlab.inference import Predictor

    if not float(cfg.max_upload_mb) > 0:
        raise ConfigError(f"max_upload_mb={cfg.max_upload_mb} must be > 0")
    torch.set_num_threads(int(cfg.threads))
    predictor = Predictor(cfg.ckpt_path, cfg.backend, cfg.onnx_path, cfg.preprocess, batch_size=1)
    return create_app(predictor, int(float(cfg.max_upload_mb) * MB), int(cfg.max_image_pixels), cfg.backend)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
def main(cfg: DictConfig) -> None:
    import uvicorn

    try:
        app = build_app(cfg)
    except MnistlabError as err:
        exit_with(err)
    print(f"mnistlab: serving {cfg.ckpt_path or cfg.onnx_path} on http://{cfg.host}:{cfg.port}/", flush=True)
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level), access_log=cfg.access_log)


if __name__ == "__main__":
    main()
