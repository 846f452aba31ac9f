"""Shared by the serving tests: model folders built with the train component's own code (its
net, its Predictor, its save()), registered and promoted in a real local registry."""

from __future__ import annotations

from pathlib import Path

import torch

from components.train import train
from components.train.model import FashionNet, ModelConfig
from retrain.backends.base import MODEL_OUTPUT, TRAIN_NODE
from retrain.backends.local_models import LocalModelRegistry
from retrain.settings import Settings

NAME = "fashion-mnist-cnn"


def build_model(folder: Path, seed: int) -> Path:
    """An untrained net (weights drawn with ``seed``), written exactly as train writes its
    output: predictor.pt, weights.pt, config.json. Different seeds answer differently."""
    torch.manual_seed(seed)
    net = FashionNet(ModelConfig.cpu())
    for module in net.modules():  # BatchNorm running stats away from 0/1, so seeds differ more
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    train.save(folder, net, net.config, {"seed": seed, "epochs": 0}, {"epochs": []})
    return folder


class Registry:
    """A local registry in ``root``: register a model built with a seed, make it champion."""

    def __init__(self, root: Path) -> None:
        self.settings = Settings(local_runs_dir=root / "runs", local_models_dir=root / "models")
        self.registry = LocalModelRegistry(self.settings)

    @property
    def models_dir(self) -> Path:
        return self.settings.local_models_dir

    def add(self, version: str, seed: int, *, champion: bool = True) -> Path:
        job = f"job-{version}"
        build_model(self.settings.local_runs_dir / job / TRAIN_NODE / MODEL_OUTPUT, seed)
        self.registry.register(NAME, version, job, {"run_id": version})
        if champion:
            self.registry.mark_champion(NAME, version)
        return self.models_dir / NAME / version
