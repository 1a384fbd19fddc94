"""Where the steps of a run execute: in one process per step on this machine (Dagster's default), on Celery workers
(dagster-celery, a Redis or RabbitMQ broker), or as one Kubernetes Job per step (dagster-k8s).

The executor is chosen by the environment of the code location, so one codebase serves a laptop, a Celery pool and
a cluster, and the UI's backfills (one run per film or per pattern partition) spread over the workers unchanged:

- ``CINEPIPE_EXECUTOR``: ``multiprocess`` (default: a process per step, or ``execution: config: in_process`` in a
  run's config), ``in_process`` (all steps of a run in its one process: much faster for the short per-film
  steps), ``celery`` or ``k8s``;
- ``CINEPIPE_CELERY_BROKER`` / ``CINEPIPE_CELERY_BACKEND``: the Celery broker and result backend URLs
  (for example ``redis://redis:6379/0`` and ``redis://redis:6379/1``); the workers are started with the same pair
  (``dagster-celery worker start -A dagster_celery.app -y docker/celery/celery.yaml``) and the same
  ``CINEPIPE_HOME``: the steps exchange files through the home, so it must be one shared filesystem;
- ``k8s``: ``dagster-k8s``'s ``k8s_job_executor``, configured by the run launcher of the Helm chart
  (``docker/k8s/values.yaml``); training steps carry ``TRAINING_STEP_TAGS``, which ask Kubernetes for a GPU.

Heavy steps stay bounded whatever the executor: they share Dagster pools (``lora_training``), whose limits live in
the instance's ``dagster.yaml``.
"""

import os

from dagster import ExecutorDefinition, in_process_executor, multi_or_in_process_executor

EXECUTOR_ENV = "CINEPIPE_EXECUTOR"
CELERY_BROKER_ENV = "CINEPIPE_CELERY_BROKER"
CELERY_BACKEND_ENV = "CINEPIPE_CELERY_BACKEND"
EXECUTORS = ("multiprocess", "in_process", "celery", "k8s")

# The Kubernetes resources of a training step (CameraCLIP, the CameraDiff base and LoRAs, the CLIPLoRA search): one
# GPU, and memory enough for a real base model. dagster-k8s reads this tag per step; other executors ignore it.
TRAINING_RESOURCES = {"requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
                      "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"}}
TRAINING_STEP_TAGS = {"dagster-k8s/config": {
    "container_config": {"resources": TRAINING_RESOURCES},
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}}


class ExecutorConfigError(ValueError):
    pass


def executor_name() -> str:
    name = os.environ.get(EXECUTOR_ENV, "").strip().lower() or "multiprocess"
    if name not in EXECUTORS:
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={name!r}: expected one of {', '.join(EXECUTORS)}")
    return name


def is_distributed() -> bool:
    """Whether a run's steps leave this machine (Celery workers, Kubernetes Jobs)."""
    return executor_name() in ("celery", "k8s")


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExecutorConfigError(f"{EXECUTOR_ENV}={executor_name()} needs {module}: "
                                  f"pip install 'cinepipe[{extra}]'") from None


def build_executor(name: str | None = None) -> ExecutorDefinition:
    """The executor every job of the code location runs with (see the module's docstring)."""
    name = name or executor_name()
    if name == "multiprocess":
        return multi_or_in_process_executor  # Dagster's default: the launchpad can still pick in_process
    if name == "in_process":
        return in_process_executor
    if name == "celery":
        celery = _require("dagster_celery", "scale")
        for env in (CELERY_BROKER_ENV, CELERY_BACKEND_ENV):
            if not os.environ.get(env):
                raise ExecutorConfigError(f"{EXECUTOR_ENV}=celery needs {env} (for example redis://localhost:6379/0)")
        # the workers must import the same code location; a step's task carries its job's code pointer
        return celery.celery_executor.configured(
            {"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": CELERY_BACKEND_ENV}},
            name="cinepipe_celery")
    if name == "k8s":
        k8s = _require("dagster_k8s", "scale")
        # namespace, image, service account, env and volumes come from the K8sRunLauncher of the Helm chart
        return k8s.k8s_job_executor
    raise ExecutorConfigError(f"unknown executor {name!r}")


def job_for(job_name: str):
    """A job of the code location, rebuilt from the environment: what a worker process loads to run a step."""
    from assets_defs.definitions import build_definitions

    return build_definitions().resolve_job_def(job_name)


def _execute_partition(job_name: str, partition: str, run_config: dict, tags: dict) -> dict:
    import time

    from dagster import DagsterInstance, build_reconstructable_job, execute_job

    from assets_defs.runner import partition_outcome

    started = time.perf_counter()
    recon = build_reconstructable_job("assets_defs.scale_out", "job_for", reconstructable_args=(job_name,))
    with DagsterInstance.get() as instance:
        with execute_job(recon, instance, run_config=run_config, raise_on_error=False,
                         tags={**tags, "dagster/partition": partition}) as result:
            return partition_outcome(result, partition, time.perf_counter() - started)


def execute_partitions(job_name: str, partitions: list[str], run_config: dict | None = None,
                       tags: dict | None = None, orchestrators: int = 4, on_done=None,
                       partition_tags: dict[str, dict] | None = None) -> dict[str, dict]:
    """One run of ``job_name`` per partition in the instance of ``DAGSTER_HOME``, with the code location's
    executor: with ``CINEPIPE_EXECUTOR=celery`` every step is a task for the Celery workers, and the workers, not
    this machine, bound the parallelism. The runs are orchestrated by ``orchestrators`` spawned processes (Dagster's
    run orchestration is not thread-safe: its logging set-up deadlocks across threads), each waiting on one run at a
    time; a few more orchestrators than workers keep every worker fed. ``partition_tags`` adds tags to one
    partition's run. Returns, per partition, :func:`assets_defs.runner.partition_outcome`; ``on_done`` is called
    with each as it finishes. A failed run does not stop the others."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if not partitions:
        return {}
    with ProcessPoolExecutor(min(orchestrators, len(partitions)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_execute_partition, job_name, p, run_config or {},
                               {**(tags or {}), **(partition_tags or {}).get(p, {})}) for p in partitions]
        done = {}
        for future in as_completed(futures):
            outcome = future.result()
            done[outcome["partition"]] = outcome
            if on_done is not None:
                on_done(outcome)
        return {p: done[p] for p in partitions}
