import multiprocessing as mp

from mlflow.tracking import MlflowClient

from cinepipe.tracking import TAG_ASSET_KEY, Tracker


def _writer(args):
    home, worker = args
    tracker = Tracker.for_home(home)
    for i in range(6):
        with tracker.start_run(f"w{worker}-{i}", {TAG_ASSET_KEY: "test"}) as run:
            run.log_params({"worker": worker, "i": i})
            run.log_metrics({"value": worker * 100 + i}, step=i)
    return worker


def test_parallel_writers_share_one_sqlite_store(tmp_path):
    """Four processes create one new store and write to it at once (creation races and lock contention)."""
    home = str(tmp_path)
    with mp.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_writer, [(home, w) for w in range(4)])) == [0, 1, 2, 3]
    tracker = Tracker.for_home(home)
    runs = MlflowClient(tracker.tracking_uri).search_runs([tracker.experiment_id], max_results=100)
    assert len(runs) == 24
    assert all(r.info.status == "FINISHED" and r.data.tags[TAG_ASSET_KEY] == "test" for r in runs)


def test_failed_block_marks_run_failed(tmp_path):
    tracker = Tracker.for_home(tmp_path)
    try:
        with tracker.start_run("boom") as run:
            run_id = run.run_id
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert MlflowClient(tracker.tracking_uri).get_run(run_id).info.status == "FAILED"


def test_environment_uri_overrides(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert Tracker.for_home(tmp_path / "home").tracking_uri == uri
