"""The registered versions of the components and their environment, derived from their files.

Why content-derived: every host computes the same ``name:version`` from the same checkout, with
no counter to race on, and a changed file always means a new version (a registered version is
immutable in Azure ML). Pure and offline: it reads files and hashes them, nothing else.

The rule (``RULE`` names it, and is hashed too, so changing the rule changes every version):

- the environment, when the app registers it itself: ``fashion-mnist-train:<h>``, where ``h`` is
  the first 16 hex digits of the SHA-256 of the base image name and ``conda.yaml``, as the
  component specs name them (all three must name the same);
- a component ``<name>:<h>``: SHA-256 over the rule, the environment reference it runs in
  (``azureml:NAME:VERSION``), whether it is deterministic, and every file of its folder
  (``components/<name>/``, the spec YAML included): relative path and bytes, in path order.
  Hidden files and folders, ``__pycache__`` and ``*.pyc`` are not part of the component.

``COMPONENT_FILES`` lists exactly those files; registration uploads exactly them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from .builder import COMPONENT_NAMES, COMPONENTS_DIR

RULE = "fashion-retrain components v1"
ENVIRONMENT_NAME = "fashion-mnist-train"
DETERMINISTIC = True  # same component version + same inputs: Azure ML may reuse the step
HASH_DIGITS = 16


@dataclass(frozen=True)
class EnvironmentSpec:
    """The environment the app registers when none is given (``AZUREML_ENVIRONMENT`` empty)."""

    name: str
    version: str
    image: str
    conda_file: Path

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class ComponentSpec:
    """One component as registered: its version, folder, the files uploaded, its environment."""

    name: str
    version: str
    folder: Path
    files: tuple[str, ...]  # relative POSIX paths, sorted
    environment: str  # azureml:NAME:VERSION
    is_deterministic: bool = DETERMINISTIC

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class Registration:
    """What must exist in the workspace: the app's environment (None: a given one) and the
    three components, keyed by name."""

    environment: EnvironmentSpec | None
    components: dict[str, ComponentSpec]

    @property
    def versions(self) -> dict[str, str]:
        return {name: spec.version for name, spec in self.components.items()}


def registration(
    environment: str | None = None, components_dir: Path = COMPONENTS_DIR
) -> Registration:
    """The versions for this checkout. ``environment`` is a registered ``NAME:VERSION`` to run
    in (deployed: provisioning registered it); None: the specs' own, registered by the app."""
    env_spec = None
    if environment:
        env_ref = "azureml:" + environment.removeprefix("azureml:")
    else:
        env_spec = spec_environment(components_dir)
        env_ref = env_spec.ref
    components = {}
    for name in COMPONENT_NAMES:
        folder = components_dir / name
        files = component_files(folder)
        digest = hashlib.sha256()
        for part in (RULE, env_ref, f"deterministic={DETERMINISTIC}"):
            _feed(digest, part.encode())
        for file in files:
            _feed(digest, file.encode())
            _feed(digest, (folder / file).read_bytes())
        version = digest.hexdigest()[:HASH_DIGITS]
        components[name] = ComponentSpec(name, version, folder, files, env_ref)
    return Registration(env_spec, components)


def spec_environment(components_dir: Path = COMPONENTS_DIR) -> EnvironmentSpec:
    """The environment the three specs declare (image + conda file), named and versioned."""
    declared = set()
    for name in COMPONENT_NAMES:
        spec = yaml.safe_load((components_dir / name / f"{name}.yml").read_text())
        env = spec.get("environment") or {}
        conda = (components_dir / name / str(env.get("conda_file", ""))).resolve()
        declared.add((str(env.get("image", "")), conda))
    if len(declared) != 1:
        raise ValueError(f"components: expected one environment in all specs, got {declared}")
    ((image, conda),) = declared
    if not image or not conda.is_file():
        raise ValueError(f"components: environment needs an image and a conda file: {declared}")
    digest = hashlib.sha256()
    _feed(digest, image.encode())
    _feed(digest, conda.read_bytes())
    return EnvironmentSpec(ENVIRONMENT_NAME, digest.hexdigest()[:HASH_DIGITS], image, conda)


def component_files(folder: Path) -> tuple[str, ...]:
    """The component's files: everything under ``folder`` but hidden entries and bytecode."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not path.is_file() or path.suffix == ".pyc":
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        found.append(relative.as_posix())
    return tuple(sorted(found))


def _feed(digest: hashlib._Hash, data: bytes) -> None:
    """Length-prefixed, so no two different sequences of parts hash alike."""
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)
