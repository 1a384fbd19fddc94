"""Jobs over the asset graph."""

from dagster import AssetSelection, define_asset_job

ingest_job = define_asset_job(
    "ingest_films",
    selection=AssetSelection.groups("ingestion") | AssetSelection.assets("shot_labels"),
    description="Probe, proxy, shot-split, cut and label one film (one run per film partition).",
)

dataset_job = define_asset_job(
    "build_dataset",
    selection=AssetSelection.assets("cinematic2k"),
    description="Build the Cinematic2K dataset version from every labelled film.",
)

camera_clip_job = define_asset_job(
    "train_camera_clip",
    selection=AssetSelection.assets("camera_clip"),
    description="Train, evaluate and register CameraCLIP on the latest Cinematic2K version.",
)

base_video_job = define_asset_job(
    "train_base_video_model",
    selection=AssetSelection.assets("base_video_model"),
    description="Train (or take) CameraDiff's text-to-video base on the latest Cinematic2K version.",
)

lora_job = define_asset_job(
    "train_camera_diff_lora",
    selection=AssetSelection.assets("camera_diff_lora"),
    description="Train, evaluate and register one pattern's LoRA (one run per pattern partition).",
)

camera_diff_summary_job = define_asset_job(
    "summarize_camera_diff",
    selection=AssetSelection.assets("camera_diff_summary"),
    description="Collect every pattern's LoRA figures in one table.",
)

clip_lora_job = define_asset_job(
    "evaluate_clip_lora",
    selection=AssetSelection.assets("clip_lora_eval"),
    description="CLIPLoRA against merge, switch and composite on the fixed multi-pattern suite.",
)
