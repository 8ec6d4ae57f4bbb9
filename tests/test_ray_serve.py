"""The service on Ray Serve (app/ray_deployment.py): a real local Ray cluster on 127.0.0.1,
started and stopped by this module, with two replicas of one CPU each serving a directory of two
small seeded models. Replicas serve the same bytes and errors as uvicorn; a replica killed under
load is replaced by Ray while a client that retries on 5xx loses nothing; the
``serve_multiplexed_model_id`` header picks a model and routes to the replicas that hold it.
Also: deploy/'s config files are valid Serve configs that name real settings.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from app.main import create_app
from app.serving import MODEL_HEADER
from app.settings import Settings
from bench.load import loopback_url, measure
from model.checkpoint import save
from tests.conftest import random_model
from tests.server import running_server

if os.environ.get("CI"):
    import ray  # CI installs the `scale` extra: these tests must run there, not be skipped
else:
    ray = pytest.importorskip("ray", reason="Ray Serve is the `scale` extra: pip install -e '.[scale]'")

from ray import serve
from ray.serve.schema import ServeDeploySchema
from ray.util.state import list_actors

from app.ray_deployment import deployment as pixelcnn_deployment

ROOT = Path(__file__).resolve().parents[1]
APP = "pixelcnn"
STARTUP_S = 240  # generous: on a busy 2-core machine Ray and two replicas take minutes to start
ENV = {"PIXELCNN_TORCH_THREADS": "1", "PIXELCNN_MAX_UPLOAD_BYTES": "4096", "PIXELCNN_DEFAULT_MODEL": "a"}
SIZES = {"a": 10, "b": 8}  # the models' image sizes; "a", the default, is what most tests use


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    url: str  # Ray's HTTP proxy
    uvicorn: str  # the same app and weights under uvicorn, for comparison


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    weights = tmp_path_factory.mktemp("ray")  # a model repository: a model per file
    save(random_model("gated", size=SIZES["a"], levels=16), weights / "a.safetensors")
    b = random_model("gated", None, size=SIZES["b"], levels=8, channels=8, layers=2, seed=1)
    save(b, weights / "b.safetensors")
    env = {**ENV, "PIXELCNN_WEIGHTS": str(weights)}
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    # The dashboard serves Ray's state API (list_actors), on 127.0.0.1 like the rest. (Ray gives
    # its raylet 30 s to register: a machine starved by other work can fail here.)
    ray.init(
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = {"num_cpus": 1, "runtime_env": {"env_vars": env}}
        app = pixelcnn_deployment.options(num_replicas=2, ray_actor_options=options).bind()
        serve.run(app, name=APP, route_prefix="/", blocking=False)
        wait_for_replicas(2, STARTUP_S)
        settings = Settings(weights=weights, default_model="a", torch_threads=1, max_upload_bytes=4096)
        with running_server(create_app(settings)) as uvicorn_url:
            yield Deployment(f"http://127.0.0.1:{port}", uvicorn_url)
    finally:
        serve.shutdown()
        ray.shutdown()
        patch.undo()


def replica_actors() -> dict[str, int]:
    """Live replicas of the app by replica id (what X-Replica says), with their process ids."""
    actors = list_actors(filters=[("state", "=", "ALIVE"), ("ray_namespace", "=", "serve")])
    prefix = f"SERVE_REPLICA::{APP}#"
    return {a.name.rsplit("#", 1)[1]: a.pid for a in actors if (a.name or "").startswith(prefix)}


def wait_for_replicas(count: int, timeout: float, gone: str = "") -> dict[str, int]:
    """Wait until ``count`` replicas run, none of them ``gone``, and the app is RUNNING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicas = replica_actors()
        status = serve.status().applications.get(APP)
        if len(replicas) == count and gone not in replicas and status and status.status == "RUNNING":
            return replicas
        time.sleep(1)
    raise AssertionError(f"not {count} running replicas after {timeout} s: {replica_actors()}")


def test_two_replicas_serve_the_same_bytes_and_errors_as_uvicorn(deployment: Deployment) -> None:
    body = {"n": 2, "seed": 11, "label": 3}
    expected = httpx.post(f"{deployment.uvicorn}/generate", json=body, timeout=60)
    assert expected.status_code == 200 and expected.headers["content-type"] == "image/png"
    served_by: Counter[str] = Counter()
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        for _ in range(20):
            r = client.post("/generate", json=body)
            assert r.status_code == 200, r.text
            assert r.content == expected.content and r.headers["x-seeds"] == expected.headers["x-seeds"]
            served_by[r.headers["x-replica"]] += 1
            if len(served_by) == 2:
                break
        assert set(served_by) == set(replica_actors()), served_by  # both replicas, named by X-Replica

        bad: list[tuple[str, dict[str, Any]]] = [
            ("/generate", {"json": {"n": 0}}),
            ("/generate", {"json": {"n": 1, "colour": "red"}}),
            ("/generate", {"json": {"label": "dragon"}}),
            ("/generate", {"content": b"{", "headers": {"content-type": "application/json"}}),
            ("/generate", {"json": {"n": 1, "pad": "x" * 8192}}),  # over max_upload_bytes
            ("/likelihood", {"files": {"image": ("x.png", b"not an image", "image/png")}}),
            ("/decompress", {"content": b"garbage", "headers": {"content-type": "application/octet-stream"}}),
        ]
        for path, request in bad:
            want = httpx.post(f"{deployment.uvicorn}{path}", timeout=60, **request)
            got = client.post(path, **request)
            assert 400 <= want.status_code < 500, (path, want.status_code)
            assert (got.status_code, got.json()) == (want.status_code, want.json()), path
            assert "x-replica" in got.headers
        assert client.get("/ready").json() == {"status": "ready"}
        assert 'route="/generate"' in client.get("/metrics").text  # each replica's own metrics


def test_bench_load_measures_the_deployment_at_a_url(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    png = io.BytesIO()
    Image.new("L", (10, 10), 128).save(png, format="PNG")
    measure(deployment.url, [4], 1, png.getvalue())
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("{200: " in line and "by replica [" in line for line in lines), lines
    with pytest.raises(SystemExit, match="this machine"):
        loopback_url("http://10.1.2.3:8000")
    assert loopback_url("http://localhost:8000/") == "http://localhost:8000"


@dataclass
class Outcomes:
    first_tries: Counter[int | str] = field(default_factory=Counter)  # status or error, first try
    retries: int = 0
    lost: int = 0
    ok: int = 0
    served_by: Counter[str] = field(default_factory=Counter)


async def retrying(client: httpx.AsyncClient, method: str, path: str, out: Outcomes, **kw: Any) -> None:
    """One call, tried again on 5xx and connection errors (at most 30 tries), as a client should."""
    for attempt in range(30):
        try:
            r = await client.request(method, path, **kw)
            status: int | str = r.status_code
        except httpx.TransportError as exc:
            status = type(exc).__name__
        if attempt == 0:
            out.first_tries[status] += 1
        if status == 200:
            out.ok += 1
            out.served_by[r.headers.get("x-replica", "-")] += 1
            return
        if isinstance(status, int) and status < 500:
            break  # a client error: trying again would not help
        out.retries += 1
        await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
    out.lost += 1


async def load_and_kill(url: str, victim_pid: int, total: int, gone: str) -> tuple[Outcomes, Outcomes]:
    """``total`` /generate calls from 8 clients, the victim killed after 20 of them succeed;
    /ready polled until the load is over and Ray has replaced the victim."""
    calls, ready = Outcomes(), Outcomes()
    load_done = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def clients() -> None:
            queue = list(range(total))
            killed = False

            async def one_client() -> None:
                nonlocal killed
                while queue:
                    k = queue.pop()
                    await retrying(client, "POST", "/generate", calls, json={"n": 1, "seed": k})
                    if calls.ok >= 20 and not killed:
                        killed = True
                        os.kill(victim_pid, signal.SIGKILL)

            await asyncio.gather(*(one_client() for _ in range(8)))
            load_done.set()

        async def poll_ready() -> None:
            deadline = time.monotonic() + STARTUP_S
            while time.monotonic() < deadline:
                await retrying(client, "GET", "/ready", ready)
                replaced = await asyncio.to_thread(replica_actors)
                if load_done.is_set() and len(replaced) == 2 and gone not in replaced:
                    return
                await asyncio.sleep(0.2)

        await asyncio.gather(clients(), poll_ready())
    return calls, ready


def test_a_replica_killed_under_load_is_replaced_and_a_retrying_client_loses_nothing(
    deployment: Deployment,
) -> None:
    replicas = wait_for_replicas(2, STARTUP_S)
    victim, pid = sorted(replicas.items())[0]
    calls, ready = asyncio.run(load_and_kill(deployment.url, pid, 200, victim))
    summary = f"calls {calls}, /ready {ready}"
    assert calls.ok == 200 and calls.lost == 0, summary
    # Each first try succeeded or failed with a 5xx (Ray's proxy answers 500 for a request
    # caught on the dead replica, 503 while it cannot route), which a retry recovers from.
    assert all(s == 200 or (isinstance(s, int) and s >= 500) for s in calls.first_tries), summary
    assert ready.lost == 0 and ready.ok > 0, summary

    replaced = wait_for_replicas(2, STARTUP_S, gone=victim)  # Ray started a new replica
    newcomer = (set(replaced) - set(replicas)).pop()
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        seen = set()
        for k in range(60):
            r = client.post("/generate", json={"n": 1, "seed": k})
            assert r.status_code == 200, r.text
            seen.add(r.headers["x-replica"])
            if newcomer in seen:
                break
        assert newcomer in seen and victim not in seen, (newcomer, seen)


def test_the_multiplexing_header_picks_a_model_and_routes_to_replicas_that_hold_it(
    deployment: Deployment,
) -> None:
    with httpx.Client(base_url=deployment.url, timeout=60) as client:

        def generate(model: str) -> httpx.Response:
            return client.post("/generate", json={"n": 1, "seed": 7}, headers={MODEL_HEADER: model})

        for name, size in SIZES.items():
            r = generate(name)
            assert r.status_code == 200, r.text
            assert r.headers["x-model"].startswith(f"{name}@")
            assert Image.open(io.BytesIO(r.content)).size == (size, size)
        holders = {r.headers["x-replica"]}  # model b: no other test asks for it

        unknown = generate("c")
        assert unknown.status_code == 404 and "this server has: a, b" in unknown.json()["detail"]

        # The replica that loaded b tells Serve's controller within 0.1 s, which tells the proxy;
        # from then on the proxy sends b's requests to it (to any replica only when it cannot
        # take them within 1-2 s, which an idle replica always can). Routed at random, all 6
        # would go to that replica once in 64 runs.
        time.sleep(3)
        served_by = []
        for _ in range(6):
            r = generate("b")
            assert r.status_code == 200 and r.headers["x-model"].startswith("b@"), r.text
            served_by.append(r.headers["x-replica"])
        assert set(served_by) == holders, (served_by, holders)


def test_the_serve_config_files_are_valid_and_name_real_settings() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "app.ray_deployment:pixelcnn"
    fields = {f"PIXELCNN_{name.upper()}" for name in Settings.model_fields}
    assert set(app["runtime_env"]["env_vars"]) <= fields
    (options,) = app["deployments"]
    assert options["name"] == pixelcnn_deployment.name
    scaling = options["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"] and scaling["target_ongoing_requests"] > 0

    service = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    on_kubernetes = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(on_kubernetes)
    assert on_kubernetes["applications"] == config["applications"]
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    for group in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8000}
