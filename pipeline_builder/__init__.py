"""The shared builder: component specs -> an azure.ai.ml ``PipelineJob``. Pure and offline.

Every entry point (blob trigger, webhook, command line, local executor) gets its job from
``build_pipeline``, so there is exactly one definition of the pipeline. ``registration`` gives
the versions the components are registered under in an Azure ML workspace (``versions``).
"""

from .builder import (
    COMPONENTS_DIR,
    SERVERLESS,
    PipelineSettings,
    build_pipeline,
    load_components,
)
from .versions import Registration, registration

__all__ = [
    "COMPONENTS_DIR",
    "SERVERLESS",
    "PipelineSettings",
    "Registration",
    "build_pipeline",
    "load_components",
    "registration",
]
