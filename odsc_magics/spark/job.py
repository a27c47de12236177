"""`predict_spark`: the driver side. Plans the job, runs it once, writes the output and reads it back."""

from __future__ import annotations

import numbers
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from odsc_magics import errors
from odsc_magics.batch.frame import BatchError
from odsc_magics.spark.ledger import STATUS_OK, Ledger, answered_frame
from odsc_magics.spark.partition import KEY_COLUMN, RESULT_COLUMNS, AnswerRows, KeyRows, Prompts

__all__ = ["SpeculationWarning", "predict_spark"]


class SpeculationWarning(UserWarning):
    """spark.speculation is on: a speculative copy of a task sends its rows' requests a second time."""


def predict_spark(
    sdf: Any,
    template: str,
    *,
    deployment: Any,
    output: str,
    checkpoint: str | None = None,
    key: str | Sequence[str] | None = None,
    chat: bool = False,
    system: str | None = None,
    concurrency: int | str = "auto",
    max_concurrency: int | None = None,
    max_rps: float | None = None,
    max_retries: int | None = None,
    on_error: str = "record",
    output_column: str = "completion",
    progress: bool = True,
    **params: Any,
) -> Any:
    """Answer one prompt per row of the Spark DataFrame ``sdf``, write the result to ``output``, return it.

    An action: it runs the job now, writes ``output`` as Parquet (any path Spark writes: local, ``oci://bucket@
    namespace/...`` on OCI Data Flow, ``s3a://``...) and returns ``spark.read.parquet(output)``, so that later
    actions read the answers instead of calling the endpoint again. The output has the input's columns, then
    ``output_column``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``latency_s``, ``attempts``,
    ``status`` (``ok``, ``error``, ``retries_exhausted``), ``error`` and ``row_key``.

    Each partition runs through ``mapInPandas`` with predict_frame's template sandbox (``{{ column }}``), client,
    retry policy and adaptive controller. The budget (``max_concurrency``, default 256; ``max_rps``, default 0.8 of
    the tenancy's 150/s) is split evenly over the tasks that run at once. Without ``max_concurrency``, a first run
    with ``concurrency="auto"`` first answers up to 512 rows on the driver to find what the endpoint holds
    (odsc_magics.spark.calibration), and that is the budget the tasks share.

    Exactly once per row: ``row_key`` hashes the ``key`` columns (or the rendered prompt), the parameters and
    the deployment. Each task appends the rows it finishes to ``checkpoint`` (default: ``output`` +
    ``"_checkpoint"``) as small write-once Parquet files and skips rows its earlier attempts finished; calling
    again with the same checkpoint sends only the rows without an ``ok`` result. ``on_error="raise"`` raises one
    BatchError after the output is written when any row failed (its ``.partial`` is the output).
    """
    spark = _session(sdf)
    _check(sdf, template, output, checkpoint, key, system, concurrency, max_concurrency, max_retries, on_error,
           output_column, max_rps, params)  # fmt: skip
    from odsc_magics.batch.frame import max_retries_setting, resolve_endpoint
    from odsc_magics.spark.budget import split, task_slots
    from odsc_magics.spark.executor_endpoint import runs_with_resource_principal, spec_of

    checkpoint = checkpoint or output.rstrip("/") + "_checkpoint"
    warn_if_speculative(spark)
    chat = bool(chat) or system is not None
    endpoint = resolve_endpoint(deployment)
    if max_retries is None:
        max_retries = max_retries_setting(endpoint)
    target = getattr(endpoint, "deployment_id", None) or getattr(endpoint, "url", "")
    keys = (key,) if isinstance(key, str) else tuple(key) if key is not None else None
    prompts = Prompts(template=template, system=system, chat=chat, params=dict(params), target=target,
                      key_columns=keys)  # fmt: skip
    spec = spec_of(endpoint, resource_principal=runs_with_resource_principal(spark))
    run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(checkpoint, run)
    partitions = sdf.rdd.getNumPartitions()
    slots = task_slots(spark, partitions)
    budget = split(slots, concurrency=concurrency, max_concurrency=max_concurrency, max_rps=max_rps)
    schema = _output_schema(sdf.schema, output_column)
    answer = AnswerRows(prompts=prompts, spec=spec, budget=budget, checkpoint=checkpoint, run=run,
                        output_column=output_column, max_retries=int(max_retries), on_error=on_error)  # fmt: skip
    previous = ledger.storage.list_all()
    if concurrency == "auto" and max_concurrency is None and not previous:
        from odsc_magics.spark.calibration import find_capacity

        found = find_capacity(sdf, answer, max_rps=max_rps)
        if found is not None:
            budget = split(slots, concurrency=concurrency, max_concurrency=found, max_rps=max_rps)
    answer = replace(answer, budget=budget, keyed=bool(previous))
    if previous:
        planned, to_send = _resume(spark, sdf, prompts, checkpoint, previous, answer, schema, output_column,
                                   partitions)  # fmt: skip
    else:
        planned, to_send = sdf.mapInPandas(answer, schema), sdf
    total = to_send.count() if progress else None
    from odsc_magics.spark.progress import SparkProgress

    group = f"odsc-magics-predict-spark-{run}"
    sc = spark.sparkContext
    sc.setJobGroup(group, f"predict_spark {run}: {total if total is not None else '?'} rows to send")
    bar = SparkProgress(spark, ledger, total=total, group=group, enabled=progress)
    started = time.monotonic()
    try:
        planned.write.mode("overwrite").parquet(output)
    except KeyboardInterrupt:
        bar.close(note="interrupted")
        raise
    except Exception as exc:
        bar.close(note="failed")
        raise BatchError(
            f"the Spark job of predict_spark failed: {_first_line(exc)}",
            hint=f"Rows finished before the failure are kept in the checkpoint {checkpoint}: call predict_spark "
            "again with the same arguments and only the rest is sent.",
        ) from exc
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    result = spark.read.parquet(output)
    counts = {row["status"]: row["count"] for row in result.groupBy("status").count().collect()}
    bar.close()
    ok = counts.get(STATUS_OK, 0)
    failed = sum(counts.values()) - ok
    elapsed = time.monotonic() - started
    bar.write(
        f"predict_spark: {ok} ok, {failed} failed of {sum(counts.values())} rows "
        f"({total if total is not None else '?'} sent this run) in {elapsed:.1f} s; output {output}"
    )
    if on_error == "raise" and failed:
        kinds = ", ".join(f"{n} × {status}" for status, n in sorted(counts.items()) if status != STATUS_OK)
        sample = result.filter(result["status"] != STATUS_OK).select("error").first()
        raise BatchError(
            f"{failed} row(s) failed ({kinds}); first: {sample['error'] if sample else '?'}",
            hint=f"The output {output} holds every row with its status and error (also the error's .partial); "
            'call again with the same checkpoint to retry only the failed rows, or use on_error="record".',
            partial=result,
        )
    return result


def warn_if_speculative(spark: Any) -> bool:
    """Warn (SpeculationWarning) when spark.speculation is on; returns whether it is."""
    value = spark.sparkContext.getConf().get("spark.speculation") or "false"
    if value.strip().lower() != "true":
        return False
    warnings.warn(
        "spark.speculation is on: a speculative copy of a slow task sends its rows' requests again (the output "
        "still holds each row once). Start the session with spark.speculation=false for predict_spark jobs.",
        SpeculationWarning,
        stacklevel=3,
    )
    return True


def _resume(
    spark: Any,
    sdf: Any,
    prompts: Prompts,
    checkpoint: str,
    files: list[str],
    answer: AnswerRows,
    schema: Any,
    output_column: str,
    partitions: int,
) -> tuple[Any, Any]:
    """The plan of a re-run: rows whose key has an ``ok`` record come from the checkpoint, the rest is sent.

    The checkpoint's ``files`` were listed before the run began: the files this run adds are never read by its
    own plan. The rows to send are spread over as many partitions as the input has (adaptive execution would
    otherwise coalesce a small remainder into one task, which holds only one task's share of the budget).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    keyed_schema = StructType([*sdf.schema.fields, StructField(KEY_COLUMN, StringType())])
    keyed = sdf.mapInPandas(KeyRows(prompts), keyed_schema)
    done = answered_frame(spark, checkpoint, files, partitions)
    to_send = keyed.join(done.select(KEY_COLUMN), KEY_COLUMN, "left_anti").repartition(partitions)
    answered = to_send.mapInPandas(answer, schema)
    results = done.select(
        KEY_COLUMN,
        F.col("text").alias(output_column),
        *(F.col(name) for name in RESULT_COLUMNS if name != "attempts"),
        F.col("attempts"),
    )
    resumed = keyed.join(results, KEY_COLUMN, "inner").select(*schema.fieldNames())
    return resumed.unionByName(answered), to_send


def _output_schema(schema: Any, output_column: str) -> Any:
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    types = {"prompt_tokens": LongType(), "completion_tokens": LongType(), "latency_s": DoubleType(),
             "attempts": LongType()}  # fmt: skip
    added = [StructField(output_column, StringType())]
    added += [StructField(name, types.get(name, StringType())) for name in RESULT_COLUMNS]
    added.append(StructField(KEY_COLUMN, StringType()))
    return StructType([*schema.fields, *added])


def _session(sdf: Any) -> Any:
    spark = getattr(sdf, "sparkSession", None)
    if spark is None or not hasattr(sdf, "mapInPandas"):
        raise errors.ValidationError(
            f"predict_spark needs a pyspark.sql.DataFrame, not {type(sdf).__name__}",
            hint="Use predict_frame(df, ...) for a pandas DataFrame, or spark.createDataFrame(df) first.",
        )
    return spark


def _check(
    sdf: Any,
    template: Any,
    output: Any,
    checkpoint: Any,
    key: Any,
    system: Any,
    concurrency: Any,
    max_concurrency: Any,
    max_retries: Any,
    on_error: Any,
    output_column: Any,
    max_rps: Any,
    params: dict[str, Any],
) -> None:
    """Every argument checked before anything runs (the same checks and messages as predict_frame's)."""
    import pandas as pd

    from odsc_magics.batch.frame import check_arguments, check_options

    columns = pd.DataFrame(columns=list(sdf.columns))
    if not isinstance(template, str):
        raise errors.ValidationError(
            f"template must be a str, not {type(template).__name__}",
            hint='e.g. predict_spark(sdf, "Summarise: {{ text }}", ...)',
        )
    check_arguments(columns, template, None, system, params)
    check_options(concurrency, max_retries, on_error, output_column, max_rps, columns)
    clash = [name for name in ("status", KEY_COLUMN) if name in sdf.columns or name == output_column]
    if clash:
        raise errors.ValidationError(
            f"column name(s) {', '.join(map(repr, clash))} are taken: predict_spark adds them",
            hint="Rename those input columns, or pass output_column= with another name.",
        )
    if max_concurrency is not None and (
        not isinstance(max_concurrency, numbers.Integral) or isinstance(max_concurrency, bool) or max_concurrency < 1
    ):
        raise errors.ValidationError(f"max_concurrency must be a whole number >= 1, not {max_concurrency!r}")
    for name, value in (("output", output), ("checkpoint", checkpoint)):
        if value is None and name == "checkpoint":
            continue
        if not isinstance(value, str) or not value.strip():
            raise errors.ValidationError(
                f"{name} must be a path or URL Spark can write (a non-empty str), not {value!r}",
                hint='e.g. output="oci://bucket@namespace/answers", or a local directory',
            )
    if checkpoint is not None and checkpoint.rstrip("/") == output.rstrip("/"):
        raise errors.ValidationError(
            "checkpoint and output must be different paths (the output is overwritten each run)",
            hint="Leave checkpoint out to use output + '_checkpoint'.",
        )
    if key is not None:
        names = [key] if isinstance(key, str) else list(key) if isinstance(key, list | tuple) else None
        if not names or not all(isinstance(name, str) for name in names):
            raise errors.ValidationError(
                f"key must be a column name or a list of them, not {key!r}",
                hint='e.g. key="review_id": rows with the same key are the same work',
            )
        missing = [name for name in names if name not in sdf.columns]
        if missing:
            raise errors.ValidationError(
                f"key names {', '.join(map(repr, missing))}, which the frame has no column for",
                hint=f"Columns: {', '.join(sdf.columns[:20])}",
            )


def _first_line(exc: BaseException) -> str:
    """The useful line of a Spark failure: the Python error a task raised, else the exception's first line."""
    text = str(exc)
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("odsc_magics.", "pyspark.errors", "PythonException")) or "Error:" in stripped:
            return stripped[:500]
    return (text.splitlines() or [type(exc).__name__])[0][:500]
