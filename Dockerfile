# The mnistlab server (CPU torch): POST /api/v1/predict, GET /health, GET / (drawing page) on port 8000.
#   docker build -t mnistlab . && docker run -p 127.0.0.1:8000:8000 -v "$PWD/models:/models:ro" mnistlab
# expects /models/best.ckpt (or pass other overrides: `docker run … mnistlab ckpt_path=/models/x.ckpt`).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app

# the CPU build of torch (~200 MB) instead of PyPI's CUDA build (several GB)
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY mnistlab ./mnistlab
COPY conf ./conf
# editable: the Hydra configs stay in /app/conf, where mnistlab looks for them
RUN pip install -e . && useradd --create-home mnistlab
USER mnistlab

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
ENTRYPOINT ["python", "-m", "mnistlab.serve", "host=0.0.0.0", "port=8000"]
CMD ["ckpt_path=/models/best.ckpt"]
