"""The shared builder: component specs -> an azure.ai.ml ``PipelineJob``. Pure and offline.

Every entry point (blob trigger, webhook, command line, local executor) gets its job from
``build_pipeline``, so there is exactly one definition of the pipeline.
"""

from .builder import (
    COMPONENTS_DIR,
    SERVERLESS,
    PipelineSettings,
    build_pipeline,
    load_components,
)

__all__ = [
    "COMPONENTS_DIR",
    "SERVERLESS",
    "PipelineSettings",
    "build_pipeline",
    "load_components",
]
