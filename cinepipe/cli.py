"""The ``cinepipe`` command line.

    cinepipe probe FILE [--json]        probe a film (displayed size, rotation, frame rate, id)
    cinepipe shots FILE [--json]        split a film into shots
    cinepipe motion FILE [--json]       camera motion per shot and per window
    cinepipe label FILE [--json] [--labels HUMAN.csv]
                                        shots with framing, angle and movement labels (confidence, source)
    cinepipe clip score VIDEO "caption" [...]   CameraCLIP similarity of a video to each caption
    cinepipe clip classify VIDEO [--json]        CameraCLIP's top framing, angle and movement, with scores
    cinepipe reel --out DIR             generate the built-in film reel with its ground truth
    cinepipe run                        materialize every asset into CINEPIPE_HOME (the main job)

A file that is not a readable video gives exactly one line on stderr, naming the file and the reason, and exit
status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

EXIT_BAD_INPUT = 2


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2))
    else:
        for key, value in obj.items():
            print(f"{key}: {value}")


def cmd_probe(args) -> int:
    from cinepipe.media import probe

    _print(probe(args.file).to_dict(), args.json)
    return 0


def cmd_shots(args) -> int:
    from cinepipe.media import probe
    from cinepipe.shots import ShotSettings, split_film

    probed = probe(args.file)
    settings = ShotSettings(adaptive_threshold=args.adaptive_threshold, min_shot_s=args.min_shot_s)
    with tempfile.TemporaryDirectory(prefix="cinepipe-shots-") as tmp:
        proxy, shot_list = split_film(probed, Path(tmp) / "proxy.mp4", settings=settings)
    shots = [{k: s[k] for k in ("index", "start_s", "end_s", "transition_in", "start_frame", "end_frame")}
             for s in shot_list.shots]
    out = {"film_id": probed.film_id, "path": probed.path, "fps": proxy.fps, "duration_s": probed.duration_s,
           "shots": shots}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{probed.path}: {len(shots)} shots")
        for s in shots:
            print(f"  {s['index']:3d}  {s['start_s']:9.3f} - {s['end_s']:9.3f}  {s['transition_in']}")
    return 0


def cmd_motion(args) -> int:
    from cinepipe.media import probe
    from cinepipe.motion import shots_motion
    from cinepipe.shots import split_film

    probed = probe(args.file)
    with tempfile.TemporaryDirectory(prefix="cinepipe-motion-") as tmp:
        proxy, shot_list = split_film(probed, Path(tmp) / "proxy.mp4")
        shots = shots_motion(proxy, shot_list.shots, window_s=args.window)
    out = {"film_id": probed.film_id, "path": probed.path, "shots": shots,
           "windows": [w for s in shots for w in s["windows"]]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{probed.path}: {len(shots)} shots")
        for s in shots:
            m = s["motion"]
            print(f"  {s['index']:3d}  {s['start_s']:9.3f} - {s['end_s']:9.3f}  {m['label']:12s} "
                  f"conf {m['confidence']:.2f}  pan {m['pan']:+.3f} tilt {m['tilt']:+.3f} zoom {m['zoom']:+.3f}")
    return 0


def cmd_label(args) -> int:
    import pandas as pd

    from cinepipe.labelling import label_rows, label_shots
    from cinepipe.labels import read_human_labels, resolve, resolve_human_labels
    from cinepipe.media import probe
    from cinepipe.shots import split_film

    probed = probe(args.file)
    human = [read_human_labels(path) for path in args.labels]  # bad label files fail before any decoding
    with tempfile.TemporaryDirectory(prefix="cinepipe-label-") as tmp:
        proxy, shot_list = split_film(probed, Path(tmp) / "proxy.mp4")
        labelled = label_shots(proxy, shot_list.shots, probed.film_id)
    if human:  # human labels override the automatic ones, shot by shot and family by family
        shots = pd.DataFrame([{"shot_id": s["shot_id"], "film_id": probed.film_id, "start_s": s["start_s"],
                               "end_s": s["end_s"]} for s in labelled])
        names = {probed.film_id: [Path(probed.path).name]}
        rows = [resolve_human_labels(h, shots, names)[0] for h in human]
        final = resolve(pd.concat([label_rows(labelled), *rows], ignore_index=True))
        for s in labelled:
            for r in final[final["shot_id"] == s["shot_id"]].itertuples():
                s["labels"][r.family] = {"value": r.value, "confidence": float(r.confidence), "source": r.source}
    out = {"film_id": probed.film_id, "path": probed.path,
           "shots": [{k: s[k] for k in ("index", "shot_id", "start_s", "end_s", "labels", "motion")}
                     for s in labelled]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{probed.path}: {len(labelled)} shots")
        for s in labelled:
            text = "  ".join(f"{(e['value'] or 'unknown'):16s} {e['confidence']:.2f}" for e in s["labels"].values())
            print(f"  {s['index']:3d}  {s['start_s']:9.3f} - {s['end_s']:9.3f}  {text}")
    return 0


def _scorer(args):
    from cinepipe.clip_scorer import ClipScorer
    from cinepipe.home import default_home
    from cinepipe.tracking import Tracker

    if args.checkpoint:
        return ClipScorer.from_checkpoint(args.checkpoint)
    home = Path(args.home) if args.home else default_home()
    return ClipScorer.from_registry(Tracker.for_home(home), args.version)


def cmd_clip(args) -> int:
    from cinepipe.clip_data import decode_clip
    from cinepipe.media import probe

    probe(args.video)  # a bad file: one line, exit 2
    try:
        scorer = _scorer(args)
    except LookupError as err:
        print(f"cinepipe: error: {err}", file=sys.stderr)
        return 1
    frames = decode_clip(args.video, scorer.frames, scorer.model.image_size)[None]
    if args.clip_command == "score":
        scores = scorer.score(frames, args.captions)[0]
        out = {"video": args.video, "model": scorer.info,
               "scores": [{"caption": c, "score": round(float(s), 5)} for c, s in zip(args.captions, scores)]}
        if args.json:
            print(json.dumps(out, indent=2, default=str))
        else:
            for c, s in zip(args.captions, scores):
                print(f"{s:+.4f}  {c}")
        return 0
    result = scorer.classify(frames)[0]
    if args.json:
        print(json.dumps({"video": args.video, "model": scorer.info, **result}, indent=2, default=str))
    else:
        for family, entry in result.items():
            print(f"{family:9s} {entry['top']:18s} {entry['scores'][entry['top']]:+.4f}")
    return 0


def cmd_reel(args) -> int:
    from cinepipe.reel import main_reel

    return main_reel(out=args.out, seed=args.seed, films=args.films, shots_per_film=args.shots_per_film,
                     width=args.width, height=args.height, fps=args.fps, workers=args.workers)


def cmd_run(args) -> int:
    try:
        from assets_defs.runner import run_all
    except ImportError as exc:  # the Dagster layer is not installed
        print(f"cinepipe: error: `cinepipe run` needs the Dagster layer (assets_defs): {exc}", file=sys.stderr)
        return 1
    from cinepipe.home import default_home

    home = Path(args.home).absolute() if args.home else default_home()
    landing = args.landing or os.environ.get("CINEPIPE_LANDING")
    reel = {"seed": args.seed}
    if args.films:
        reel["films"] = args.films
    if args.shots_per_film:
        reel["shots_per_film"] = args.shots_per_film
    clip = {k: v for k, v in (("epochs", args.clip_epochs), ("synthetic_films", args.synthetic_films))
            if v is not None}
    diffusion = {"enabled": not args.no_camera_diff, "workers": args.lora_workers,
                 "base": {"steps": args.base_steps} if args.base_steps is not None else {},
                 "lora": {k: v for k, v in (("steps", args.lora_steps), ("framing_angle_steps", args.lora_steps),
                                            ("eval_samples", args.eval_samples)) if v is not None},
                 "eval": {"seeds": list(range(args.compose_seeds))} if args.compose_seeds else {}}
    return run_all(home, Path(landing) if landing else None, reel, clip_config=clip, diffusion=diffusion)


def cmd_generate(args) -> int:
    from cinepipe.camera_diff import CameraDiffError, activate, load_registered, write_video
    from cinepipe.diffusion_settings import GenerationSettings
    from cinepipe.home import default_home
    from cinepipe.tracking import Tracker

    home = Path(args.home).absolute() if args.home else default_home()
    try:
        model, loaded = load_registered(Tracker.for_home(home), args.pattern, args.base_version)
    except (LookupError, CameraDiffError) as err:
        print(f"cinepipe: error: {err}", file=sys.stderr)
        return 2
    weight = args.weight if args.weight is not None else 1.0
    activate(model, {p: weight for p in dict.fromkeys(args.pattern)})
    video = model.sample([args.prompt], [args.seed], GenerationSettings(steps=args.steps,
                                                                         guidance_scale=args.guidance))[0]
    write_video(Path(args.out), video, model.format.fps, scale=args.scale)
    print(json.dumps({"out": str(args.out), "models": loaded, "frames": int(video.shape[0]),
                      "size": int(video.shape[1]), "denoiser_calls": model.calls}) if args.json else
          f"wrote {args.out} ({video.shape[0]} frames; base {loaded['base']}, "
          + ", ".join(f"{p} v{v}" for p, v in loaded.items() if p != "base") + ")")
    return 0


def cmd_compose(args) -> int:
    from cinepipe.camera_diff import CameraDiffError, load_registered, write_video
    from cinepipe.clip_scorer import ClipScorer
    from cinepipe.composition import Composer, Request, SearchSettings
    from cinepipe.diffusion_settings import GenerationSettings
    from cinepipe.home import default_home
    from cinepipe.tracking import Tracker

    home = Path(args.home).absolute() if args.home else default_home()
    tracker = Tracker.for_home(home)
    if len(args.pattern) < 1:
        print("cinepipe: error: compose needs at least one --pattern", file=sys.stderr)
        return 2
    try:
        model, loaded = load_registered(tracker, args.pattern)
        scorer = ClipScorer.from_registry(tracker) if args.method == "cliplora" else None
    except (LookupError, CameraDiffError) as err:
        print(f"cinepipe: error: {err}", file=sys.stderr)
        return 2
    segments = tuple((p,) for p in args.pattern) if args.two_shot else ()
    request = Request(args.prompt, tuple(dict.fromkeys(args.pattern)), segments)
    search = SearchSettings(population=args.population, generations=args.generations,
                            preview_steps=args.preview_steps, seed=args.seed)
    result = Composer(model, scorer, GenerationSettings(steps=args.steps)).compose(args.method, request, args.seed,
                                                                                 search)
    write_video(Path(args.out), result.video, model.format.fps, scale=args.scale)
    info = {"out": str(args.out), "method": args.method, "models": loaded, "denoiser_calls": result.denoiser_calls,
            "seconds": round(result.seconds, 2),
            "schedule": result.schedule.round(3).tolist() if result.schedule is not None else None}
    print(json.dumps(info) if args.json else f"wrote {args.out} ({args.method}, {result.denoiser_calls} denoiser "
                                             f"calls, {result.seconds:.1f} s)")
    return 0


def cmd_lineage(args) -> int:
    from cinepipe.home import default_home
    from cinepipe.lineage import LineageError, film_lineage, format_film, format_model, model_lineage
    from cinepipe.tracking import Tracker

    home = Path(args.home).absolute() if args.home else default_home()
    tracker = Tracker.for_home(home)
    try:
        if args.model:
            name, _, version = args.model.partition("/")
            result = model_lineage(home, tracker, name, version or None)
            text = format_model(result)
        else:
            result = film_lineage(home, tracker, args.film)
            text = format_film(result)
    except LineageError as err:
        print(f"cinepipe: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinepipe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("probe", help="probe a film")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("shots", help="split a film into shots")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--adaptive-threshold", type=float, default=3.0)
    p.add_argument("--min-shot-s", type=float, default=0.25)
    p.set_defaults(func=cmd_shots)

    p = sub.add_parser("motion", help="camera motion per shot and per window (pan, tilt, zoom, roll, label)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--window", type=float, default=1.0, help="window length in seconds (default 1)")
    p.set_defaults(func=cmd_motion)

    p = sub.add_parser("label", help="shots with framing, angle and movement labels (value, confidence, source)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--labels", action="append", default=[], metavar="HUMAN_LABELS",
                   help="a CSV or Parquet file of human labels that override the automatic ones (repeatable)")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("clip", help="use the registered CameraCLIP model: score captions, classify a video")
    clip_sub = p.add_subparsers(dest="clip_command", required=True)
    for name, helptext in (("score", "similarity of a video to each caption"),
                           ("classify", "top framing, angle and movement with every value's score")):
        q = clip_sub.add_parser(name, help=helptext)
        q.add_argument("video")
        if name == "score":
            q.add_argument("captions", nargs="+")
        q.add_argument("--json", action="store_true")
        q.add_argument("--version", help="CameraCLIP model version in the registry (default: the latest)")
        q.add_argument("--checkpoint", help="a CameraCLIP checkpoint file instead of the registry")
        q.add_argument("--home", help="overrides CINEPIPE_HOME (where the MLflow store is)")
        q.set_defaults(func=cmd_clip)

    p = sub.add_parser("reel", help="generate the built-in film reel with ground truth")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--films", type=int, default=6)
    p.add_argument("--shots-per-film", type=int, default=8)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_reel)

    p = sub.add_parser("run", help="materialize every asset into CINEPIPE_HOME (default ./.cinepipe)")
    p.add_argument("--home", help="overrides CINEPIPE_HOME")
    p.add_argument("--landing", help="folder of films to ingest (overrides CINEPIPE_LANDING; default: the reel)")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in reel")
    p.add_argument("--films", type=int, help="number of reel films (default 6)")
    p.add_argument("--shots-per-film", type=int, help="shots per reel film (default 8)")
    p.add_argument("--clip-epochs", type=int, help="CameraCLIP training epochs (default: the asset's, 16)")
    p.add_argument("--synthetic-films", type=int,
                   help="synthetic reel films (8 clips each) CameraCLIP also trains on (default: the asset's, 40)")
    p.add_argument("--base-steps", type=int, help="CameraDiff base model training steps (default: the asset's)")
    p.add_argument("--lora-steps", type=int, help="training steps per LoRA, every family (default: the asset's)")
    p.add_argument("--eval-samples", type=int, help="videos generated per LoRA evaluation (default: the asset's)")
    p.add_argument("--lora-workers", type=int, default=2, help="LoRA partitions trained at once (default 2)")
    p.add_argument("--compose-seeds", type=int, help="seeds of the CLIPLoRA evaluation (default 3)")
    p.add_argument("--no-camera-diff", action="store_true", help="stop after CameraCLIP")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("generate", help="a video from the registered CameraDiff base and pattern LoRAs")
    p.add_argument("prompt")
    p.add_argument("--pattern", action="append", default=[], help="a pattern whose LoRA is applied (repeatable)")
    p.add_argument("--out", required=True, help="the MP4 to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: none)")
    p.add_argument("--weight", type=float, help="every LoRA's weight (default 1)")
    p.add_argument("--scale", type=int, default=4, help="upscale factor of the written video (nearest)")
    p.add_argument("--base-version", help="CameraDiff-base version (default: the latest)")
    p.add_argument("--home", help="overrides CINEPIPE_HOME (where the MLflow store is)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("lineage", help="model -> runs, dataset, films and shots; or film -> datasets and models")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a registered model, NAME or NAME/VERSION (e.g. CameraCLIP/2)")
    which.add_argument("--film", help="a film id, file name or stem")
    p.add_argument("--home", help="overrides CINEPIPE_HOME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("compose", help="several pattern LoRAs in one video (merge, switch, composite, cliplora)")
    p.add_argument("prompt")
    p.add_argument("--pattern", action="append", default=[], help="a pattern to compose (repeatable)")
    p.add_argument("--method", choices=["merge", "switch", "composite", "cliplora"], default="cliplora")
    p.add_argument("--two-shot", action="store_true", help="one pattern per consecutive part of the frames")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--population", type=int, default=8, help="cliplora: schedules per generation")
    p.add_argument("--generations", type=int, default=4, help="cliplora: generations")
    p.add_argument("--preview-steps", type=int, default=8,
                   help="cliplora: denoising steps of a fitness preview (at --steps or more: the previews are the "
                        "final videos)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--home", help="overrides CINEPIPE_HOME (where the MLflow store is)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compose)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cinepipe.media import MediaError

    try:
        return args.func(args)
    except MediaError as err:
        print(f"cinepipe: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cinepipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
