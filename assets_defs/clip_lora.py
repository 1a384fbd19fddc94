"""CLIPLoRA versus static composition, as the ``clip_lora_eval`` asset: the fixed suite of multi-pattern requests,
the four methods over three seeds, a results table in MLflow (a run for the evaluation, a child run per method)
and in the asset's metadata, the search's fitness plot and the best video per method."""

import base64
import json
import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets_defs.automation import after_upstream_update
from assets_defs.camera_clip import camera_clip
from assets_defs.camera_diff import camera_diff_lora
from assets_defs.ingestion import _failure
from assets_defs.scale_out import TRAINING_STEP_TAGS
from assets_defs.resources import MlflowTracking
from cinepipe.diffusion_settings import METHODS, GenerationSettings, SearchSettings


class ClipLoraEvalConfig(Config):
    seeds: list[int] = [0, 1, 2]
    steps: int = GenerationSettings.steps
    # the evaluation's search is smaller than SearchSettings' defaults (the main job's budget, and at most 10x
    # merge's denoiser calls): 4 + 2 schedules, each scored on its full video (preview_steps = steps), 8x merge's
    # calls over the suite (a two-shot request's step costs a call per segment)
    population: int = 4
    generations: int = 1
    phases: int = SearchSettings.phases
    mutation_rate: float = SearchSettings.mutation_rate
    crossover_rate: float = SearchSettings.crossover_rate
    elitism: int = SearchSettings.elitism
    patience: int = SearchSettings.patience
    preview_steps: int = GenerationSettings.steps  # at steps or more, the previews are the final videos
    max_weight: float = SearchSettings.max_weight
    top_weight: float = SearchSettings.top_weight
    prompt_weight: float = SearchSettings.prompt_weight
    requests: list[int] = []  # indices into the suite (tests); empty: the whole suite

    def search(self) -> SearchSettings:
        return SearchSettings(population=self.population, generations=self.generations, phases=self.phases,
                              mutation_rate=self.mutation_rate, crossover_rate=self.crossover_rate,
                              elitism=self.elitism, patience=self.patience, preview_steps=self.preview_steps,
                              max_weight=self.max_weight, top_weight=self.top_weight,
                              prompt_weight=self.prompt_weight)


@asset(group_name="clip_lora", deps=[camera_clip, camera_diff_lora], kinds={"pytorch", "mlflow"}, code_version="2",
       op_tags=TRAINING_STEP_TAGS,
       automation_condition=after_upstream_update())
def clip_lora_eval(context: AssetExecutionContext, config: ClipLoraEvalConfig,
                   mlflow: MlflowTracking) -> MaterializeResult:
    """merge, switch, composite and CLIPLoRA (a genetic search over LoRA weight schedules scored by CameraCLIP) on
    the fixed suite of multi-pattern requests, with the registered base, LoRAs and CameraCLIP."""
    from cinepipe.camera_diff import load_registered, preview_gif
    from cinepipe.clip_scorer import ClipScorer
    from cinepipe.composition import Composer
    from cinepipe.composition_eval import SUITE, evaluate_methods, fitness_figure, results_table, suite_patterns

    tracker = mlflow.tracker()
    suite = tuple(SUITE[i] for i in config.requests) if config.requests else SUITE
    try:
        model, loaded = load_registered(tracker, suite_patterns(suite))
        scorer = ClipScorer.from_registry(tracker)
    except (LookupError, ValueError) as err:
        raise _failure(err) from None
    composer = Composer(model, scorer, GenerationSettings(steps=config.steps))
    search = config.search()
    version = model.info.get("dataset_version")
    with mlflow.run(context, "clip_lora_eval", dataset_version=version) as run:
        run.log_params({"search": json.dumps(search.__dict__), "seeds": config.seeds, "steps": config.steps,
                        "requests": len(suite), "models": json.dumps(loaded),
                        "cameraclip_version": scorer.info.get("version")})
        table, summary, histories, best = evaluate_methods(composer, suite, tuple(config.seeds), search)
        run.log_metrics(summary)
        results = results_table(summary)
        run.log_dict(table.to_dict("records"), "runs.json")
        run.log_dict({"markdown": results.to_markdown(index=False)}, "results.json")
        if histories:
            run.log_figure(fitness_figure(histories), "fitness_vs_evaluations.png")
        previews = {}
        with tempfile.TemporaryDirectory() as tmp:
            for method in METHODS:
                with mlflow.run(context, f"clip_lora_eval {method}", dataset_version=version,
                                tags={"cinepipe.method": method}, parent_run_id=run.run_id) as child:
                    child.log_metrics({k: v for k, v in summary.items() if k.startswith(f"{method}_")})
                    if method in best:
                        prompt, video = best[method]
                        gif = preview_gif(Path(tmp) / f"{method}.gif", video[None], video[None], model.format.fps,
                                          scale=3, count=1)
                        child.log_artifact(gif, "preview")
                        run.log_artifact(gif, "previews")
                        previews[method] = (prompt, base64.b64encode(gif.read_bytes()).decode())
        link = MlflowTracking.link_metadata(run)
    cliplora_vs_merge = summary.get("cliplora_denoiser_calls", 0) / max(1.0, summary.get("merge_denoiser_calls", 1))
    gallery = "\n\n".join(f"**{m}** ({p})\n\n![{m}](data:image/gif;base64,{g})" for m, (p, g) in previews.items())
    return MaterializeResult(metadata={
        **link, **{k: round(v, 4) for k, v in summary.items()},
        "results": MetadataValue.md(results.round(3).to_markdown(index=False)),
        "cliplora_calls_vs_merge": round(cliplora_vs_merge, 2),
        "best_videos": MetadataValue.md(gallery or "none"),
        "models": MetadataValue.json(loaded),
    })


CLIP_LORA_ASSETS = [clip_lora_eval]
