"""Build the coopscore Bento (`make bento`, or `coopscore bento`): the code, the locked dependencies
and, as labels, the champion model versions of the registry it was built against.

    .venv/bin/python -m serving.bento_build      # prints the tag, e.g. coopscore:3kx2...

The Bento pins code and dependencies; it does not carry the models. A deployment loads the champions
from the registry it points at (COOPSCORE_TRACKING_URI) and GET /v1/status reports the versions
actually serving. The labels `member_model_version` and `cooperative_model_version` say which
versions were champion in `tracking_store` when the Bento was built (docs/deploy.md).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from settings import Paths, get_paths, get_settings
from records.db import masked  # a label is readable by anyone who can list the Bentos

ROOT = Path(__file__).resolve().parents[1]  # the checkout: the Bento's build context
BENTOFILE = ROOT / "bentofile.yaml"
REQUIREMENTS = ROOT / "var" / "bento" / "requirements.txt"  # bentofile.yaml's python.requirements_txt
SUBJECTS = ("member", "cooperative")


class BentoBuildError(RuntimeError):
    """The Bento cannot be built; the message says what to do."""


def find_uv() -> str:
    """The uv `make install` put in .tools/bin, else one on PATH."""
    uv = ROOT / ".tools" / "bin" / "uv"
    found = str(uv) if uv.exists() else shutil.which("uv")
    if found is None:
        raise BentoBuildError("uv is not installed: run `make install` first (it puts uv in .tools/bin).")
    return found


def export_requirements(target: Path = REQUIREMENTS) -> Path:
    """uv.lock's runtime packages, pinned, without the project itself and without the dev group."""
    uv = find_uv()
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([uv, "export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project",
                           "--no-header", "--no-annotate", "--quiet", "--output-file", str(target)],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BentoBuildError(f"`uv export` failed: {done.stderr.strip()}")
    return target


def champion_labels(paths: Paths) -> dict[str, str]:
    """The Bento's labels: each subject's champion version and the store it was read from."""
    from training import registry

    labels = {"tracking_store": masked(paths.tracking_uri)}
    if get_settings().tracking_uri is None and not (paths.mlflow / "mlflow.db").exists():
        raise BentoBuildError(f"no MLflow store at {paths.mlflow}: run `make demo` or `coopscore "
                              "train`, or point COOPSCORE_TRACKING_URI at the registry the "
                              "deployment will use.")
    registry.use_store(paths)
    for subject in SUBJECTS:
        champion = registry.champion_version(subject)
        if champion is None:
            raise BentoBuildError(
                f"no {subject} champion in the registry {labels['tracking_store']}: run `make demo` "
                "or `coopscore train`, or point COOPSCORE_TRACKING_URI at the registry the "
                "deployment will use.")
        labels[f"{subject}_model_version"] = str(champion.version)
    return labels


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def build(paths: Paths | None = None) -> str:
    """Build the Bento into the BentoML store (BENTOML_HOME) and return its tag."""
    from importlib.metadata import version

    import bentoml

    labels = champion_labels(paths or get_paths())
    labels |= {"coopscore_version": version("coopscore"), "git_commit": _git_commit()}
    export_requirements()
    # BentoML runs uv while building (it looks for it on PATH, else tries to pip-install it).
    os.environ["PATH"] = os.pathsep.join([str(Path(find_uv()).parent), os.environ.get("PATH", "")])
    bento = bentoml.bentos.build_bentofile(str(BENTOFILE), build_ctx=str(ROOT), labels=labels)
    return str(bento.tag)


def main() -> None:
    try:
        print(build())
    except BentoBuildError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
