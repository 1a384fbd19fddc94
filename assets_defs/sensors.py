"""The landing sensor: new films in the landing folder become partitions and run requests.

The cursor holds the ids of films already requested, and a film that is already a partition (ingested by
`cinepipe run`, say) is not requested again either, so a film is requested once; a renamed or copied file has the
same content hash, hence the same id, and is not a new film. Hashing happens once per (path, size, mtime) thanks to
the landing index kept under the home.
"""


import json

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from assets_defs.jobs import ingest_job
from assets_defs.partitions import FILMS_PARTITION, films_partitions
from assets_defs.resources import CinepipeHome
from cinepipe.landing import scan_landing, unique_films

SOURCE_TAG = "cinepipe/source_path"


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def landing_sensor(context: SensorEvaluationContext, home: CinepipeHome):
    """Watch the landing folder; add a partition and a run request for every new film."""
    cursor = json.loads(context.cursor) if context.cursor else {"films": []}
    requested = set(cursor.get("films", []))
    films = unique_films(scan_landing(home.landing_path, home.landing_index, home.settle_seconds))
    # a film that is already a partition (ingested by `cinepipe run`, or by an earlier cursor) is not new
    existing = set(context.instance.get_dynamic_partitions(FILMS_PARTITION))
    new = {fid: f for fid, f in films.items() if fid not in requested and fid not in existing}
    if not new:
        return SkipReason(f"no new films in {home.landing_path} ({len(films)} known)")
    to_add = sorted(new)
    run_requests = [RunRequest(run_key=fid, partition_key=fid, tags={SOURCE_TAG: f.path, "cinepipe/film": f.name})
                    for fid, f in sorted(new.items())]
    context.log.info("new films: " + ", ".join(f"{f.name} ({fid})" for fid, f in sorted(new.items())))
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[films_partitions.build_add_request(to_add)] if to_add else [],
        cursor=json.dumps({"films": sorted(requested | set(new))}),
    )
