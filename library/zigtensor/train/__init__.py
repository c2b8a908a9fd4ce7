"""zigtensor.train: training recipes (TOML -> validated dataclasses), the model registry, and the trainer
(loop, evals, metrics, checkpoints with exact resume) that `zt train` runs.

    recipe = zt.train.load_recipe("recipes/fashion_mlp.toml", ["optim.lr=3e-4", "train.steps=200"])
    print(zt.train.recipe_to_toml(recipe))
    result = zt.train.Trainer(recipe, out="runs/mlp").fit()
"""

from __future__ import annotations

from .checkpoint import CheckpointError
from .models import DataInfo, build_model, generate
from .recipe import (
    DATASETS,
    LANGUAGE_MODELS,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    AdagradConfig,
    AdamConfig,
    AdamWConfig,
    CNNConfig,
    ConstantSchedule,
    CosineSchedule,
    EvalConfig,
    GPTConfig,
    ImageDataConfig,
    LionConfig,
    LSTMConfig,
    MLPConfig,
    Recipe,
    RecipeError,
    RMSpropConfig,
    SampleConfig,
    SGDConfig,
    StepSchedule,
    TextDataConfig,
    TrainConfig,
    WarmupCosineSchedule,
    WarmupLinearSchedule,
    WSDSchedule,
    apply_override,
    load_recipe,
    parse_recipe,
    recipe_to_dict,
    recipe_to_toml,
)
from .trainer import Trainer, TrainingError, TrainResult

__all__ = [
    "Trainer", "TrainResult", "TrainingError", "CheckpointError", "DataInfo", "build_model", "generate",
    "Recipe", "RecipeError", "load_recipe", "parse_recipe", "apply_override", "recipe_to_dict",
    "recipe_to_toml",
    "MODELS", "DATASETS", "OPTIMIZERS", "SCHEDULES", "LANGUAGE_MODELS",
    "MLPConfig", "CNNConfig", "GPTConfig", "LSTMConfig", "ImageDataConfig", "TextDataConfig",
    "SGDConfig", "AdamConfig", "AdamWConfig", "RMSpropConfig", "AdagradConfig", "LionConfig",
    "ConstantSchedule", "StepSchedule", "CosineSchedule", "WarmupCosineSchedule", "WarmupLinearSchedule",
    "WSDSchedule", "TrainConfig", "EvalConfig", "SampleConfig",
]
