"""zigtensor.train: training recipes (TOML -> validated dataclasses); the trainer builds on them.

    recipe = zt.train.load_recipe("recipes/mlp.toml", ["optim.lr=3e-4", "train.steps=200"])
    print(zt.train.recipe_to_toml(recipe))
"""

from __future__ import annotations

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

__all__ = [
    "Recipe", "RecipeError", "load_recipe", "parse_recipe", "apply_override", "recipe_to_dict",
    "recipe_to_toml",
    "MODELS", "DATASETS", "OPTIMIZERS", "SCHEDULES", "LANGUAGE_MODELS",
    "MLPConfig", "CNNConfig", "GPTConfig", "LSTMConfig", "ImageDataConfig", "TextDataConfig",
    "SGDConfig", "AdamConfig", "AdamWConfig", "RMSpropConfig", "AdagradConfig", "LionConfig",
    "ConstantSchedule", "StepSchedule", "CosineSchedule", "WarmupCosineSchedule", "WarmupLinearSchedule",
    "WSDSchedule", "TrainConfig", "EvalConfig", "SampleConfig",
]
