"""`python -m mnistlab.serve` under load: bounded concurrent clients on loopback, one server process.

Trains `experiment=fast` (or uses $MNISTLAB_SERVE_CKPT), exports it to ONNX, then for each backend starts the
server with its default settings and sends drawn-looking digits (200×200 black-on-white PNGs made from MNIST
test digits) to POST /api/v1/predict over keep-alive connections. The client is a minimal asyncio HTTP/1.1
client so that it takes little of the two cores the server needs. Baseline measured in the same run: GET
/health on the same server (the HTTP stack's own floor), and the in-process predict time per image.

Then a hostile mix on the torch backend: 10 clients upload 3000×3000 16-bit PNGs (a few hundred KB each, costly
to decode) while normal clients keep predicting and a probe measures GET /health.

Target on this 2-core machine: >= 200 req/s from one process, p99 < 50 ms, 0 errors; /health p99 < 100 ms under
the hostile mix.
"""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO, check, data_dir, fast_checkpoint, row
from PIL import Image

CONCURRENCY = 8
REQUESTS = 3000
ATTACKERS, ATTACK_ROUNDS = 10, 3
WARMUP = 200
BOUNDARY = "mnistlabbench"


def drawn_digits(count: int = 100) -> tuple[list[bytes], np.ndarray]:
    """PNG bytes of MNIST test digits as a user draws them: dark ink on white, 200×200; and their labels."""
    from mnistlab.data.mnist import load_split

    images, labels = load_split(data_dir() / "MNIST" / "raw", "test")
    pngs = []
    for image in images[:count, 0].numpy():
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((200, 200), Image.Resampling.BICUBIC).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    return pngs, labels[:count].numpy()


def multipart(png: bytes) -> bytes:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        "POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")
    )
    return status, await reader.readexactly(length)


async def load(port: int, requests: list[bytes], concurrency: int) -> tuple[list[float], int, float, list[bytes]]:
    """Send every request once over ``concurrency`` keep-alive connections; latencies (s), errors, wall (s)."""
    queue = list(enumerate(requests))
    latencies: list[float] = []
    bodies: list[bytes] = [b""] * len(requests)
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            index, request = queue.pop()
            start = time.perf_counter()
            try:
                writer.write(request)
                status, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - start)
            bodies[index] = body
            errors += status != 200
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start, bodies


def huge_png() -> bytes:
    """3000×3000, 16 bits per pixel, mostly blank: small on the wire, 17 MB to decode."""
    array = np.zeros((3000, 3000), dtype=np.uint16)
    array[1000:2000, 1400:1600] = 60000
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


async def hostile_mix(port: int, normal: list[bytes]) -> tuple[list[float], list[float], int]:
    """/health latencies (s) and normal predict latencies while ATTACKERS clients send huge decodes."""
    attack = multipart(huge_png())
    health_request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    health, predicts, errors, running = [], [], 0, True

    async def attacker(address: str) -> None:  # each attacker a client of its own loopback address
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        for _ in range(ATTACK_ROUNDS):
            writer.write(attack)
            await read_response(reader)
        writer.close()

    async def probe(request: bytes, into: list[float], pause: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        while running:
            start = time.perf_counter()
            writer.write(request)
            status, _ = await read_response(reader)
            into.append(time.perf_counter() - start)
            errors += status != 200
            await asyncio.sleep(pause)
        writer.close()

    probes = [asyncio.create_task(probe(health_request, health, 0.01))]
    probes += [asyncio.create_task(probe(normal[i], predicts, 0.0)) for i in range(2)]
    await asyncio.gather(*(attacker(f"127.0.1.{i + 1}") for i in range(ATTACKERS)))
    running = False
    await asyncio.gather(*probes)
    return health, predicts, errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(ckpt: Path, backend: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mnistlab.serve", f"ckpt_path={ckpt}", f"backend={backend}", f"port={port}"]
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            if server.poll() is not None:
                sys.exit(f"bench: the server exited:\n{server.stderr.read().decode()[-3000:]}")
            time.sleep(0.1)
    server.kill()
    sys.exit("bench: the server did not open its port within 60 s")


def in_process_ms(ckpt: Path, pngs: list[bytes]) -> float:
    """Decode + preprocess + model, batch of one, in this process: the work each request must do anyway."""
    import torch

    from mnistlab.serving.inference import Predictor
    from mnistlab.serving.preprocess import open_image

    torch.set_num_threads(1)
    predictor = Predictor(str(ckpt), batch_size=1)
    for png in pngs[:20]:
        predictor.predict([open_image(png)])
    start = time.perf_counter()
    for png in pngs:
        predictor.predict([open_image(png)])
    return 1000 * (time.perf_counter() - start) / len(pngs)


def measure(ckpt: Path, backend: str, pngs: list[bytes], labels: np.ndarray) -> bool:
    import json

    port = free_port()
    server = start_server(ckpt, backend, port)
    try:
        health = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",) * REQUESTS
        asyncio.run(load(port, list(health[:WARMUP]), CONCURRENCY))
        floor_lat, floor_err, floor_wall, _ = asyncio.run(load(port, list(health), CONCURRENCY))
        requests = [multipart(pngs[i % len(pngs)]) for i in range(REQUESTS)]
        asyncio.run(load(port, requests[:WARMUP], CONCURRENCY))
        latencies, errors, wall, bodies = asyncio.run(load(port, requests, CONCURRENCY))
        hostile = asyncio.run(hostile_mix(port, requests[:2])) if backend == "torch" else None
    finally:
        server.terminate()
        server.wait(timeout=30)
    predicted = [json.loads(body)["label"] if body else None for body in bodies[: len(pngs)]]
    accuracy = float(np.mean([p == str(label) for p, label in zip(predicted, labels, strict=True)]))
    ms = np.percentile(np.array(latencies) * 1000, [50, 99])
    rate = len(latencies) / wall
    print(f"  backend={backend}: {REQUESTS} requests, {CONCURRENCY} concurrent keep-alive clients")
    row("GET /health (the HTTP floor)", len(floor_lat) / floor_wall, "req/s")
    row("POST /api/v1/predict", rate, "req/s")
    row("  predict / health throughput", rate / (len(floor_lat) / floor_wall), "x")
    row("  p50 latency", ms[0], "ms")
    row("  p99 latency", ms[1], "ms")
    row("  errors", errors + floor_err, "")
    row(f"  accuracy on the {len(pngs)} drawn-looking test digits", 100 * accuracy, "%")
    ok = True
    if hostile is not None:
        health, predicts, hostile_errors = hostile
        h_ms = np.percentile(np.array(health) * 1000, [50, 99])
        print(
            f"  hostile mix: {ATTACKERS} clients × {ATTACK_ROUNDS} uploads of a 3000×3000 16-bit PNG, 2 normal clients"
        )
        row("  GET /health p50 under the mix", h_ms[0], "ms")
        row("  GET /health p99 under the mix", h_ms[1], "ms")
        row("  normal predict p99 under the mix", float(np.percentile(np.array(predicts) * 1000, 99)), "ms")
        ok = check("/health p99 < 100 ms under the hostile mix", h_ms[1] < 100 and hostile_errors == 0)
    ok = check(f"{backend}: >= 200 req/s", rate >= 200) and ok
    ok = check(f"{backend}: p99 < 50 ms", ms[1] < 50) and ok
    return check(f"{backend}: 0 errors", errors + floor_err == 0) and ok


def main() -> bool:
    ckpt_path = fast_checkpoint()
    export = subprocess.run(
        [sys.executable, "-m", "mnistlab.export", f"ckpt_path={ckpt_path}", "format=onnx"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if export.returncode != 0:
        sys.exit(f"bench: export failed:\n{export.stderr[-3000:]}")
    pngs, labels = drawn_digits()
    row("in-process decode + preprocess + model (batch of 1)", in_process_ms(ckpt_path, pngs), "ms/image")
    ok = True
    for backend in ("torch", "onnx"):
        ok = measure(ckpt_path, backend, pngs, labels) and ok
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
