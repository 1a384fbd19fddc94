"""Jobs over the asset graph."""

from dagster import AssetSelection, define_asset_job


ingest_job = define_asset_job(
    "ingest_films",
    selection=AssetSelection.groups("ingestion"),
    description="Probe, proxy, shot-split and cut one film (one run per film partition).",
)
