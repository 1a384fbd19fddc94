"""``cinepipe run``: materialize every asset, for every partition, into the persistent home.

Run history goes to the Dagster instance under ``<home>/dagster`` (so ``dagster dev`` shows it), MLflow runs to
the embedded store (or ``MLFLOW_TRACKING_URI``). With no landing folder configured, the built-in reel is generated
under the home (once) and ingested.
"""

import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

DAGSTER_YAML = """\
# written by cinepipe: the run history of `cinepipe run` and `dagster dev` lives here
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 2  # e.g. the lora_training pool: two LoRA partitions train at once on 2 cores
"""


# Dagster's per-event console log drowns the progress lines; the full event log stays in the instance (and the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def prepare_dagster_home(home: Path) -> Path:
    """Point DAGSTER_HOME at ``<home>/dagster`` unless the environment already names one."""
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").absolute()
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def failure_lines(result) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error.cause is not None and "Error occurred while executing" in (error.message or ""):
                error = error.cause  # an unexpected exception: show what was raised, not Dagster's wrapper
            message = (error.message or "").strip().splitlines()
            text = message[0] if message else "failed"
            for prefix in ("dagster._core.definitions.events.Failure: ", "Failure: "):
                text = text.removeprefix(prefix)
            lines.append(f"{event.step_key}: {text}")
    return lines


def _execute(defs, job_name: str, instance, run_config: dict, tags: Optional[dict] = None):
    """Run an unpartitioned job in this process; returns (result, seconds)."""
    started = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False,
                                                                run_config=run_config, tags=tags)
    return result, time.perf_counter() - started


def _report_outcome(title: str, prefix: str, done: dict, echo: Callable[[str], None], figures: str = "",
                    indent: str = "    ") -> list[str]:
    """Echo a run's outcome (``success``, ``seconds``, ``failures``) under ``title``; return its failure lines,
    prefixed, for the final summary."""
    if done["success"]:
        echo(f"{title}: ok in {done['seconds']:.1f} s" + (f" ({figures})" if figures else ""))
        return []
    lines = done["failures"] or ["failed"]
    echo(f"{title}: FAILED in {done['seconds']:.1f} s")
    for line in lines:
        echo(f"{indent}{line}")
    return [f"{prefix} {line}" for line in lines]


def _report_failure(result, title: str, prefix: str, took: float, echo: Callable[[str], None]) -> list[str]:
    """Echo a failed run's title and its one-line reasons; return them, prefixed, for the final summary."""
    return _report_outcome(title, prefix, {"success": False, "seconds": took, "failures": failure_lines(result)},
                           echo)


def materialization_metadata(result, asset: Optional[str] = None) -> dict:
    """The metadata values of ``asset``'s materialization in a run's result, or, without ``asset``, of every
    materialization by asset key."""
    found = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        found[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return found if asset is None else found.get(asset, {})


def small_metadata(meta: dict) -> dict:
    """The numbers and short strings of a materialization's metadata (what a progress line or a report shows)."""
    return {k: v for k, v in meta.items() if isinstance(v, (int, float, str)) and len(str(v)) < 200}


def partition_outcome(result, partition: str, seconds: float) -> dict:
    """What a partition's run reports back to the process that launched it: run id, ``success``, seconds, one-line
    failures and the small metadata of its materializations, by asset."""
    return {"partition": partition, "run_id": result.run_id, "success": result.success, "seconds": seconds,
            "failures": [] if result.success else (failure_lines(result) or ["failed"]),
            "metadata": {k: small_metadata(v) for k, v in materialization_metadata(result).items()}}


def _materialize_lora(home: str, landing: str, pattern: str, run_config: dict, tags: dict) -> dict:
    """One LoRA partition in a worker process (the parent's DAGSTER_HOME is inherited)."""
    from dagster import DagsterInstance

    from assets_defs.definitions import build_definitions

    defs = build_definitions(home=home, landing=landing)
    started = time.perf_counter()
    result = defs.resolve_job_def("train_camera_diff_lora").execute_in_process(
        partition_key=pattern, instance=DagsterInstance.get(), raise_on_error=False, run_config=run_config,
        tags=tags)
    return partition_outcome(result, pattern, time.perf_counter() - started)


def run_camera_diff(defs, instance, home: Path, landing: Path, echo: Callable[[str], None],
                    base_config: Optional[dict] = None, lora_config: Optional[dict] = None,
                    workers: int = 2, train_base: bool = True) -> list[str]:
    """The base (unless ``train_base`` is False: the current one is used), the twenty LoRA partitions
    (``workers`` at a time, each in its own process with its share of the cores) and the summary, under one
    MLflow run for the LoRA set. Returns the failure lines."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from assets_defs.camera_diff import LORA_SET_TAG
    from assets_defs.scale_out import execute_partitions, executor_name, is_distributed
    from cinepipe.camera_diff import current_base
    from cinepipe.taxonomy import TAXONOMY
    from cinepipe.tracking import Tracker

    failures: list[str] = []
    if train_base:
        echo("training CameraDiff's base video model")
        result, took = _execute(defs, "train_base_video_model", instance,
                                {**QUIET, "ops": {"base_video_model": {"config": base_config or {}}}})
        if not result.success:
            return _report_failure(result, "base_video_model", "base_video_model", took, echo)
        meta = materialization_metadata(result, "base_video_model")
        echo(f"base_video_model: {meta.get('model', '?')} in {took:.1f} s (final loss {meta.get('final_loss')})")
    base = current_base(home)
    if base is None:
        return ["base_video_model: no base video model (materialize base_video_model first)"]
    patterns = list(TAXONOMY.patterns)
    workers = max(1, min(workers, len(patterns)))
    executor = executor_name()
    distributed = is_distributed()
    # here, each of the `workers` processes gets its share of the cores; a remote worker uses all of its own
    threads = 0 if distributed else max(1, (os.cpu_count() or 1) // workers)
    run_config = {**QUIET, "ops": {"camera_diff_lora": {"config": {"torch_threads": threads,
                                                                    **(lora_config or {})}}}}
    tracker = Tracker.for_home(home)
    echo(f"training {len(patterns)} LoRAs on the {executor} executor's workers" if distributed
         else f"training {len(patterns)} LoRAs, {workers} at a time")
    started = time.perf_counter()
    set_tags = {"dagster.asset_key": "camera_diff_lora", "cinepipe.dataset_version": base["dataset_version"],
                "cinepipe.base_model": base.get("model_version"), "cinepipe.lora_set": "true"}
    with tracker.start_run(f"camera_diff_lora set {base['dataset_version']}", set_tags) as parent:
        tags = {LORA_SET_TAG: parent.run_id}
        count = iter(range(1, len(patterns) + 1))

        def report(done: dict) -> None:
            m = done["metadata"].get("camera_diff_lora", {})
            figures = ", ".join(f"{k} {m[k]:.2f}" for k in ("motion_control_acc", "motion_control_acc_base",
                                                              "cameraclip_pattern_acc") if k in m)
            failures.extend(_report_outcome(f"  [{next(count)}/{len(patterns)}] {done['partition']}",
                                            f"camera_diff_lora[{done['partition']}]", done, echo, figures,
                                            indent="      "))

        if distributed:  # every partition is a run whose step the executor's workers take; they bound parallelism
            execute_partitions("train_camera_diff_lora", patterns, run_config, tags,
                               orchestrators=max(workers, 4), on_done=report)
        else:
            context = multiprocessing.get_context("spawn")  # no fork after torch has started its threads
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_materialize_lora, str(home), str(landing), p, run_config, tags)
                           for p in patterns]
                for future in as_completed(futures):
                    report(future.result())
        parent.log_metrics({"seconds": time.perf_counter() - started, "workers": workers,
                            "failed_partitions": len(failures)})
        result, took = _execute(defs, "summarize_camera_diff", instance, QUIET, tags)
    if result.success:
        meta = materialization_metadata(result, "camera_diff_summary")
        echo(f"camera_diff_summary: motion control {meta.get('motion_control_acc_mean', float('nan')):.2f} with "
             f"the LoRAs vs {meta.get('motion_control_acc_base_mean', float('nan')):.2f} without (movements)")
    else:
        failures += _report_failure(result, "camera_diff_summary", "camera_diff_summary", took, echo)
    return failures


def run_all(home: Path, landing: Optional[Path] = None, reel_settings: Optional[dict] = None,
            echo: Callable[[str], None] = print, clip_config: Optional[dict] = None,
            diffusion: Optional[dict] = None) -> int:
    """Materialize the whole graph; return 0 if everything succeeded, 1 if any asset failed (each one named)."""
    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    prepare_dagster_home(home)

    from dagster import DagsterInstance

    from assets_defs.definitions import build_definitions
    from assets_defs.partitions import FILMS_PARTITION
    from assets_defs.scale_out import execute_partitions, is_distributed
    from assets_defs.sensors import SOURCE_TAG
    from cinepipe.landing import scan_landing, unique_films

    if landing is None:
        from cinepipe.reel import generate_reel

        landing = home / "reel"
        started = time.perf_counter()
        echo(f"no landing folder configured: using the built-in reel in {landing}")
        generate_reel(landing, **(reel_settings or {}))
        echo(f"  reel ready in {time.perf_counter() - started:.1f} s")
    landing = Path(landing).absolute()
    distributed = is_distributed()
    if distributed:
        # the runs' orchestrator processes rebuild the code location from the environment (so do the workers,
        # which must be started with the same CINEPIPE_HOME and CINEPIPE_LANDING)
        os.environ.update(CINEPIPE_HOME=str(home), CINEPIPE_LANDING=str(landing))
    defs = build_definitions(home=str(home), landing=str(landing))
    instance = DagsterInstance.get()
    films = unique_films(scan_landing(landing, home / "landing_index.json"))
    if not films:
        echo(f"no films in {landing}")
        return 1
    existing = set(instance.get_dynamic_partitions(FILMS_PARTITION))
    new = [fid for fid in films if fid not in existing]
    if new:
        instance.add_dynamic_partitions(FILMS_PARTITION, new)
    echo(f"ingesting {len(films)} films from {landing} into {home}")
    job = defs.resolve_job_def("ingest_films")
    failures: list[str] = []
    ordered = sorted(films.items(), key=lambda kv: kv[1].name)
    if distributed:  # every film a run whose steps the executor's workers take
        position = {fid: i for i, (fid, _) in enumerate(ordered, 1)}

        def report(done: dict) -> None:
            fid = done["partition"]
            failures.extend(_report_outcome(f"[{position[fid]}/{len(films)}] {films[fid].name} ({fid})",
                                            f"{films[fid].name} ({fid})", done, echo))

        execute_partitions("ingest_films", [fid for fid, _ in ordered], QUIET, on_done=report,
                           partition_tags={fid: {SOURCE_TAG: f.path, "cinepipe/film": f.name} for fid, f in ordered})
    else:
        for i, (film_id, source) in enumerate(ordered, 1):
            started = time.perf_counter()
            result = job.execute_in_process(partition_key=film_id, instance=instance, raise_on_error=False,
                                            run_config=QUIET,
                                            tags={SOURCE_TAG: source.path, "cinepipe/film": source.name})
            done = {"success": result.success, "seconds": time.perf_counter() - started,
                    "failures": [] if result.success else failure_lines(result)}
            failures += _report_outcome(f"[{i}/{len(films)}] {source.name} ({film_id})",
                                        f"{source.name} ({film_id})", done, echo)
    # the dataset, from every film that made it (films that failed are left out and named in its metadata)
    result, took = _execute(defs, "build_dataset", instance, QUIET)
    if result.success:
        meta = materialization_metadata(result, "cinematic2k")
        echo(f"cinematic2k {meta.get('dataset_version', '?')}: {meta.get('dagster/row_count', '?')} shots "
             f"in {took:.1f} s")
        for check in result.get_asset_check_evaluations():
            if not check.passed:
                echo(f"    check {check.check_name} did not pass ({check.severity.value})")
    else:
        failures += _report_failure(result, "cinematic2k", "dataset", took, echo)
    if result.success:  # CameraCLIP on the new dataset version
        echo("training CameraCLIP (the order-aware model and the mean-pooling baseline)")
        config = {**QUIET, "ops": {"camera_clip": {"config": clip_config or {}}}}
        result, took = _execute(defs, "train_camera_clip", instance, config)
        if result.success:
            meta = materialization_metadata(result, "camera_clip")
            echo(f"camera_clip: {meta.get('model', '?')} in {took:.1f} s: text->video R@1 "
                 f"{meta.get('test_t2v_r1', float('nan')):.2f} (mean pooling "
                 f"{meta.get('test_t2v_r1_meanpool', float('nan')):.2f}), direction test "
                 f"{meta.get('test_direction_acc', float('nan')):.2f}")
        else:
            failures += _report_failure(result, "camera_clip", "camera_clip", took, echo)
    if not any(line.startswith("dataset") for line in failures) and (diffusion or {}).get("enabled", True):
        diff_failures = run_camera_diff(defs, instance, home, landing, echo, (diffusion or {}).get("base"),
                                        (diffusion or {}).get("lora"), (diffusion or {}).get("workers", 2))
        failures += diff_failures
        # the evaluation runs unless the base or CameraCLIP failed (a missing LoRA fails it with one line)
        if not any(line.startswith(("base_video_model", "camera_clip ")) for line in failures):
            echo("evaluating CLIPLoRA against merge, switch and composite")
            config = {**QUIET, "ops": {"clip_lora_eval": {"config": (diffusion or {}).get("eval") or {}}}}
            result, took = _execute(defs, "evaluate_clip_lora", instance, config)
            if result.success:
                meta = materialization_metadata(result, "clip_lora_eval")
                echo(f"clip_lora_eval in {took:.1f} s: patterns present "
                     + ", ".join(f"{m} {meta.get(f'{m}_pattern_presence_mean', float('nan')):.2f}"
                                 for m in ("merge", "switch", "composite", "cliplora")))
            else:
                failures += _report_failure(result, "clip_lora_eval", "clip_lora_eval", took, echo)
    if failures:
        print(f"cinepipe run: {len(failures)} asset(s) failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    echo("all assets materialized")
    return 0
