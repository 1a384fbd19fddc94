#!/usr/bin/env python3
"""Run the images' install commands without Docker: for each Dockerfile, a clean virtual environment, the files
its COPY lines bring in (from the build context compose.yaml gives it), then its ``RUN pip ...`` lines, in its
WORKDIR, with its ENV; then a smoke test of what the image's services run. ``RUN`` lines that are not pip (apt-get)
are listed, not run.

    python3 docker/check_install.py              # full installs, about 3 minutes with a cold pip cache
    python3 docker/check_install.py --dry-run    # resolve every requirement, install nothing (CI: ~30 s)
    python3 docker/check_install.py --use-cache  # full installs that may reuse pip's cache (drops --no-cache-dir)

Standard library only. Exit status 1 if any install or smoke test fails.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Dockerfile -> build context, as in compose.yaml (tests/test_deploy.py checks that they agree)
IMAGES = {"docker/Dockerfile": ".", "docker/Dockerfile.mlflow": "docker"}
# what each image's services need to work, run from outside the copied sources (so the installed package answers)
CHECK_DATA_FILES = ("import pathlib, cinepipe; root = pathlib.Path(cinepipe.__file__).parent; "
                    "names = [p.name for p in (root / 'data').rglob('*.json')]; "
                    "assert 'taxonomy.json' in names and 'cinepipe-tiny.json' in names, names; print(root)")
SMOKE = {
    "docker/Dockerfile": [
        ["python", "-c", CHECK_DATA_FILES],
        ["python", "-c", "import dagster_postgres, psycopg2, torch, open_clip, mlflow"],
        ["dagster", "definitions", "validate", "-m", "assets_defs.definitions"],
        ["dagster-webserver", "--help"],
        ["dagster-daemon", "run", "--help"],
    ],
    "docker/Dockerfile.mlflow": [
        ["python", "-c", "import psycopg2, mlflow; print(mlflow.__version__)"],
        ["mlflow", "server", "--help"],
    ],
}


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuation lines joined."""
    instructions, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # also inside a continued instruction
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            current = ""
    return instructions


def parse_env(arguments: str) -> dict[str, str]:
    """``ENV A=1 B=2`` or the legacy ``ENV A 1``."""
    tokens = shlex.split(arguments)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.split("=", 1) for token in tokens)


def image_env(dockerfile: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in parse_dockerfile(dockerfile):
        if keyword == "ENV":
            env.update(parse_env(arguments))
    return env


def inside(root: Path, path: str, workdir: str) -> Path:
    """An image path (absolute, or relative to WORKDIR) under ``root``."""
    full = path if path.startswith("/") else f"{workdir.rstrip('/')}/{path}"
    return root / os.path.normpath(full).lstrip("/")


def stage(dockerfile: Path, context: Path, root: Path) -> tuple[Path, dict[str, str], list[str]]:
    """Apply WORKDIR, COPY, ENV and ARG under ``root``; returns (WORKDIR, environment, RUN commands in order)."""
    workdir, env, runs = "/", {}, []
    root.mkdir(parents=True, exist_ok=True)
    for keyword, arguments in parse_dockerfile(dockerfile):
        if keyword == "WORKDIR":
            workdir = arguments if arguments.startswith("/") else f"{workdir.rstrip('/')}/{arguments}"
            inside(root, workdir, "/").mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = [t for t in shlex.split(arguments) if not t.startswith("--")]
            target = inside(root, dest, workdir)
            for source in sources:
                src = context / source
                if not src.exists():
                    raise FileNotFoundError(f"{dockerfile}: COPY {source}: not in the build context {context}")
                if src.is_dir():
                    shutil.copytree(src, target if len(sources) == 1 else target / src.name, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    into_dir = dest.endswith("/") or len(sources) > 1
                    (target if into_dir else target.parent).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / src.name if into_dir else target)
        elif keyword == "ENV":
            env.update(parse_env(arguments))
        elif keyword == "ARG":
            name = arguments.split("=", 1)[0]
            if name in os.environ:  # a build argument given to this script as an environment variable
                env[name] = os.environ[name]
            elif "=" in arguments:
                env[name] = arguments.split("=", 1)[1]
        elif keyword == "RUN":
            runs.append(arguments)
    return inside(root, workdir, "/"), env, runs


def check_image(name: str, dry_run: bool, use_cache: bool, keep: bool) -> bool:
    dockerfile, context = REPO / name, REPO / IMAGES[name]
    tmp = Path(tempfile.mkdtemp(prefix="cinepipe-image-"))
    ok = True
    try:
        workdir, image_env_vars, runs = stage(dockerfile, context, tmp / "root")
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {**os.environ, **image_env_vars, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "VIRTUAL_ENV": str(venv), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONPATH", None)
        for command in runs:
            argv = shlex.split(command)
            if argv[:2] != ["pip", "install"]:
                print(f"[{name}] not run here: RUN {command}")
                continue
            argv = [str(venv / "bin" / "pip"), *argv[1:]]
            if use_cache:
                argv = [a for a in argv if a != "--no-cache-dir"]
            if dry_run:
                argv.insert(2, "--dry-run")
            print(f"[{name}] RUN {command}{'  (dry run)' if dry_run else ''}", flush=True)
            started = time.monotonic()
            result = subprocess.run(argv, cwd=workdir, env=env)
            print(f"[{name}]   exit {result.returncode} after {time.monotonic() - started:.0f} s", flush=True)
            ok = ok and result.returncode == 0
        if ok and not dry_run:
            home = tmp / "dagster_home"
            home.mkdir()
            smoke_env = {**env, "DAGSTER_HOME": str(home)}  # an instance for `definitions validate`, not the image's
            for argv in SMOKE.get(name, []):
                result = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=tmp, env=smoke_env,
                                        capture_output=True, text=True)
                print(f"[{name}] smoke: {' '.join(argv)[:80]}: {'ok' if result.returncode == 0 else 'FAILED'}")
                if result.returncode != 0:
                    print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
                    ok = False
    finally:
        if keep:
            print(f"[{name}] kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=list(IMAGES), help=f"Dockerfiles (default: {' '.join(IMAGES)})")
    parser.add_argument("--dry-run", action="store_true", help="resolve the requirements, install nothing")
    parser.add_argument("--use-cache", action="store_true", help="let pip use its cache (drops --no-cache-dir)")
    parser.add_argument("--keep", action="store_true", help="keep the virtual environments")
    args = parser.parse_args(argv)
    failed = [name for name in args.images if not check_image(name, args.dry_run, args.use_cache, args.keep)]
    print("install check: " + (f"FAILED for {', '.join(failed)}" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
