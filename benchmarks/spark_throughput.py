"""predict_spark's rows/s against the endpoint's capacity, beside predict_frame and two peers, in one run.

One `odsc-magics local` deployment. By default (`--serving gpu`) it is Mistral-7B-Instruct-v0.3 on VM.GPU.A10.1
as the backend simulates vLLM there (continuous batching, the KV cache; `--time-scale` runs it faster than real
time), and its capacity is the best rows/s of predict_frame at a fixed concurrency of a small sweep (64, 128, 256),
measured first in the same run. With `--serving fixed` it holds `--capacity` requests at once (more are answered
429, as a full load balancer does) and answers each in about `--seconds`; its capacity is C / (time per request).
The same rows (short prompts, `--max-tokens` answers with ignore_eos) go through:

- predict_spark on local[4] (four tasks; the budget split over them, each task's controller adapting);
- predict_frame in this process;
- Ray Data's HttpRequestProcessor (ray.data.llm), best of a small sweep of its concurrency, batch_size and qps,
  with retries on (max_retries=6);
- LangChain's ChatOpenAI `.batch(max_concurrency=K)` inside a Spark pandas UDF (four partitions), best of a
  sweep of K, with return_exceptions=True so that a failed row is counted instead of failing the job (against a
  chat deployment of the same model and shape: one request per row, as predict_spark sends).

The peers cannot sign OCI requests, so they talk to a signing proxy on 127.0.0.1 that adds the OCI signature (of
the backend's profile) and forwards to the deployment's /predict; its cost per request is a millisecond or so.
Each run prints rows/s, its ratio to the capacity, failed rows and requests sent per row (counted by the backend).

    python benchmarks/spark_throughput.py [--serving gpu|fixed] [--time-scale 10] [--rows 20000]
        [--peer-rows 1500] [--capacity 32] [--seconds 0.3] [--max-tokens N] [--peers ray,langchain]

Rates are rows answered per second of the whole call (planning, the driver's capacity probe, writing and reading
the output included); the peers get fewer rows (--peer-rows) because they are several times slower.

It needs PySpark (and for the peers ray[data] and langchain-openai): run from another environment, it runs
itself again in .venv-spark-bench (`make .venv-spark-bench/.installed-stamp` builds it).
"""

# No `from __future__ import annotations`: Spark reads the pandas UDF's type hints at run time.
import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_ENV = ROOT / ".venv-spark-bench" / "bin" / "python"
os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")
TEMPLATE = "Classify the sentiment of review {{ n }}: {{ text }}"
SWEEP = (64, 128, 256)  # --serving gpu: the fixed concurrencies whose best rows/s is the capacity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 20,000 rows, as notebooks/04_spark.ipynb: a Spark job's fixed cost (planning, starting the tasks, writing and
    # reading the output: a few seconds) is then a few percent of the call, as it is for the jobs Spark is for.
    parser.add_argument("--rows", type=int, default=20_000, help="rows for predict_spark and predict_frame")
    parser.add_argument("--peer-rows", type=int, default=1500, help="rows for each peer run (they are slower)")
    parser.add_argument("--serving", choices=("gpu", "fixed"), default="gpu", help="the backend's timing model")
    parser.add_argument("--time-scale", type=float, default=10.0, help="--serving gpu: simulated seconds per second")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per answer (gpu 128, fixed 21)")
    parser.add_argument("--capacity", type=int, default=32, help="--serving fixed: requests held at once")
    parser.add_argument("--seconds", type=float, default=0.3, help="--serving fixed: time per request")
    parser.add_argument("--peers", default="ray,langchain", help="which peers to run (comma-separated; '' for none)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pyspark") is None:
        if BENCH_ENV.exists() and Path(sys.prefix).resolve() != BENCH_ENV.parents[1].resolve():
            os.execv(str(BENCH_ENV), [str(BENCH_ENV), __file__, *(argv if argv is not None else sys.argv[1:])])
        print("spark_throughput needs PySpark: build .venv-spark-bench (make .venv-spark-bench/.installed-stamp)")
        return 1
    sys.path.insert(0, str(ROOT))
    from odsc_magics.local.testing import start_backend

    if args.max_tokens is None:
        args.max_tokens = 128 if args.serving == "gpu" else 21
    if args.serving == "gpu":
        flags = ["--serving", "gpu", "--time-scale", str(args.time_scale)]
    else:
        tokens_per_s = round((args.max_tokens - 1) / (args.seconds - 0.1), 3)
        flags = ["--serving", "fixed", "--capacity", str(args.capacity), "--ttft-ms", "100", "--tokens-per-s",
                 str(tokens_per_s)]  # fmt: skip
    flags += ["--tenancy-rps", "100000", "--deploy-seconds", "0.2"]
    with tempfile.TemporaryDirectory(prefix="spark-bench-") as home:
        os.environ["HOME"] = home
        backend = start_backend(Path(home) / "backend", *flags)
        try:
            deployment = backend.create_deployment("bench", bandwidth_mbps=1000)
            return run(args, backend, deployment, Path(home))
        finally:
            backend.stop()


def run(args, backend, deployment, home: Path) -> int:
    from odsc_magics.client import connect
    from odsc_magics.config import LLMSettings

    endpoint = connect(deployment["url"], settings=LLMSettings(backend="local", local_dir=str(backend.state_dir)))
    params = {"max_tokens": args.max_tokens, "ignore_eos": True}
    if args.serving == "gpu":
        sweep_rows = [(n, f"The kettle number {n} works well") for n in range(min(args.rows, 3000))]
        levels = {level: len(sweep_rows) / _timed_call(lambda c=level: _predict_frame(sweep_rows, endpoint, params, c))
                  for level in SWEEP}  # fmt: skip
        best = max(levels, key=levels.get)
        capacity = levels[best]
        print(f"endpoint: Mistral-7B-Instruct-v0.3 on VM.GPU.A10.1 (--serving gpu, time scale {args.time_scale:g}); "
              + ", ".join(f"fixed {level}: {rate:.1f}" for level, rate in levels.items())
              + f" rows/s -> capacity {capacity:.1f} rows/s (fixed {best}); {args.rows} rows per run")  # fmt: skip
    else:
        per_request = statistics.median(_timed(endpoint, params) for _ in range(5))
        capacity = args.capacity / per_request
        print(f"endpoint: {args.capacity} requests at once, {per_request:.3f} s per request -> capacity "
              f"{capacity:.1f} rows/s; {args.rows} rows per run")  # fmt: skip
    rows = [(n, f"The kettle number {n} works well") for n in range(args.rows)]
    results: list[tuple[str, float, int, float]] = []

    def measure(name: str, call, count: int = args.rows, target: str | None = None) -> None:
        target = target or deployment["id"]
        before = backend.deployment_stats(target)["predict_requests"]
        started = time.monotonic()
        try:
            failed = call()
        except Exception as exc:  # a peer whose job fails when retries run out: every row failed
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            failed = count
        elapsed = time.monotonic() - started
        sent = backend.deployment_stats(target)["predict_requests"] - before
        rate = (count - failed) / elapsed
        results.append((name, rate, failed, sent / count))
        print(f"  {name}: {count} rows, {rate:.1f} rows/s ({rate / capacity:.2f} of capacity), {failed} failed "
              f"rows, {sent / count:.2f} requests/row")  # fmt: skip

    spark = _spark()
    frame = spark.createDataFrame(rows, "n INT, text STRING").repartition(4).cache()
    frame.count()
    measure("predict_spark local[4]", lambda: _predict_spark(frame, endpoint, home, params))
    measure("predict_frame", lambda: _predict_frame(rows, endpoint, params))
    peers: list[tuple[str, float, int, float]] = []
    wanted = {name.strip() for name in args.peers.split(",") if name.strip()}
    if wanted:
        proxy = SigningProxy(deployment["url"], backend.signer())
        proxy.start()
        few = rows[: args.peer_rows]
        small = spark.createDataFrame(few, "n INT, text STRING").repartition(4).cache()
        small.count()
        try:
            for concurrency, batch_size, qps in RAY_SWEEP[args.serving]:
                if "ray" not in wanted:
                    break
                name = f"ray.data.llm HttpRequestProcessor concurrency={concurrency} batch_size={batch_size} qps={qps}"
                call = lambda c=concurrency, b=batch_size, q=qps: _ray(few, proxy.url, c, b, q, params)  # noqa: E731
                measure(name, call, len(few))
            if "langchain" in wanted:
                # A chat deployment of the same capacity: ChatOpenAI.batch sends one request per row from a thread
                # pool (a completion LLM's .batch would pack many prompts into one request).
                chat = backend.create_deployment("bench-chat", chat=True, bandwidth_mbps=1000)
                chat_proxy = SigningProxy(chat["url"], backend.signer())
                chat_proxy.start()
                try:
                    for k in LANGCHAIN_SWEEP[args.serving]:
                        name = f"LangChain ChatOpenAI.batch(max_concurrency={k}) in a pandas UDF x4 partitions"
                        measure(name, lambda k=k: _langchain(small, chat_proxy.url, k, params), len(few), chat["id"])
                finally:
                    chat_proxy.stop()
            for prefix in ("ray", "LangChain"):
                runs = [r for r in results if r[0].startswith(prefix)]
                if runs:
                    peers.append(max(runs, key=lambda r: r[1]))
        finally:
            proxy.stop()
            _stop_ray()
    spark.stop()
    ours = results[0]
    print("\nsummary (rows/s, ratio to capacity, failed rows, requests/row):")
    for name, rate, failed, per_row in [ours, results[1], *peers]:
        print(f"  {name:<90} {rate:8.1f}  {rate / capacity:5.2f}  {failed:6d}  {per_row:5.2f}")
    if peers:
        best = max(peers, key=lambda r: r[1])
        print(f"predict_spark / best peer: {ours[1] / max(best[1], 1e-9):.1f}x ({best[0]})")
    return 0


# Per serving model, the peers' sweeps: up to the in-flight counts where the capacity lies (a capacity wall of 32;
# a GPU whose best fixed concurrency is 128 or more).
RAY_SWEEP = {"fixed": ((8, 16, None), (16, 16, None), (16, 64, None), (16, 16, 8)),
             "gpu": ((16, 16, None), (32, 16, None), (32, 64, None))}  # fmt: skip
LANGCHAIN_SWEEP = {"fixed": (8, 16), "gpu": (8, 32, 64)}  # per partition, four partitions


def _timed(endpoint, params: dict) -> float:
    started = time.monotonic()
    endpoint.complete("How long does one request take?", max_retries=0, **params)
    return time.monotonic() - started


def _timed_call(call) -> float:
    started = time.monotonic()
    failed = call()
    if failed:
        raise RuntimeError(f"{failed} rows failed while measuring the capacity")
    return time.monotonic() - started


def _spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    session = (
        SparkSession.builder.master("local[4]")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _predict_spark(frame, endpoint, home: Path, params: dict) -> int:
    from odsc_magics.spark import predict_spark

    out = predict_spark(frame, TEMPLATE, deployment=endpoint, output=str(home / f"out-{time.time_ns()}"),
                        max_rps=100_000, progress=False, **params)  # fmt: skip
    return out.filter("status != 'ok'").count()


def _predict_frame(rows, endpoint, params: dict, concurrency: int | str = "auto") -> int:
    import pandas as pd

    from odsc_magics.batch import predict_frame

    df = pd.DataFrame(rows, columns=["n", "text"])
    out = predict_frame(df, TEMPLATE, deployment=endpoint, concurrency=concurrency, progress=False, **params)
    return int(out["error"].notna().sum())


def _ray(rows, url: str, concurrency: int, batch_size: int, qps: int | None, params: dict) -> int:
    import ray
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    config = HttpRequestProcessorConfig(url=f"{url}/v1/completions", concurrency=concurrency, batch_size=batch_size,
                                        qps=qps, max_retries=6)  # fmt: skip
    processor = build_processor(
        config,
        preprocess=lambda row: {"payload": {"model": "odsc-llm", **params,
                                            "prompt": f"Classify the sentiment of review {row['n']}: {row['text']}"}},
        postprocess=lambda row: {"ok": bool(row["http_response"].get("choices"))},
    )  # fmt: skip
    data = ray.data.from_items([{"n": n, "text": text} for n, text in rows])
    answered = processor(data).take_all()
    return len(rows) - sum(1 for row in answered if row["ok"])


def _stop_ray() -> None:
    if importlib.util.find_spec("ray") is not None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def _langchain(frame, url: str, max_concurrency: int, params: dict) -> int:
    import pandas as pd
    from pyspark.sql.functions import col, concat, lit, pandas_udf

    @pandas_udf("string")
    def answer(prompts: pd.Series) -> pd.Series:
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(base_url=f"{url}/v1", api_key="unused", model="odsc-llm", max_tokens=params["max_tokens"],
                         extra_body={"ignore_eos": params["ignore_eos"]}, max_retries=6)  # fmt: skip
        answers = llm.batch(list(prompts), config={"max_concurrency": max_concurrency}, return_exceptions=True)
        return pd.Series([None if isinstance(a, Exception) else a.content for a in answers])

    prompt = concat(lit("Classify the sentiment of review "), col("n").cast("string"), lit(": "), col("text"))
    out = frame.select(answer(prompt).alias("completion"))
    return out.filter("completion IS NULL").count()


class SigningProxy:
    """127.0.0.1 proxy: POST /v1/<route> → the deployment's /predict with the route header, signed with OCI."""

    def __init__(self, deployment_url: str, signer) -> None:
        self.target = deployment_url.rstrip("/") + "/predict"
        self.signer = signer
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner = None

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

        asyncio.set_event_loop(self._loop)

        async def forward(request):
            import requests

            body = await request.read()
            route = "/" + request.match_info["route"]
            headers = {"content-type": "application/json", "route": route}
            signed = requests.Request("POST", self.target, data=body, headers=headers).prepare()
            self.signer(signed)
            async with self._session.post(self.target, data=body, headers=dict(signed.headers)) as answer:
                payload = await answer.read()
                kind = answer.headers.get("content-type", "application/json")
                return web.Response(body=payload, status=answer.status, headers={"content-type": kind})

        async def setup():
            self._session = ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=120))
            app = web.Application()
            app.router.add_post("/{route:.*}", forward)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            self._ready.set()

        self._loop.run_until_complete(setup())
        self._loop.run_forever()

    def stop(self) -> None:
        async def shutdown():
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


if __name__ == "__main__":
    raise SystemExit(main())
