"""Study parameters: loading, schema validation and the resolved study plan.

``params.yaml`` is the single source of parameters. This module validates it against the
parameter schema shipped with the package (``tokencert/params.schema.yaml``, naming the
offending key on error) and resolves, once, what the workflow runs: :func:`resolve_plan`
gives the :class:`Plan` (datasets, vocabulary recipes including the K sweep, classifiers,
smoothing per dataset, attack jobs, radii, report settings) that the rules, the scripts
and the report read.
"""

from .errors import ConfigError
from .params import SCHEMA_PATH, load_params, load_schema, retype_command_line, validate
from .plan import DatasetPlan, Plan, ReportPlan, attacked_models, attacked_pairs, resolve_plan
from .recipes import (
    BASELINE,
    DATASET_EVALUATION_KEYS,
    DISCRETE_PREFIX,
    EXTERNAL,
    NOISE_PREFIX,
    Recipe,
    check_margin,
    data_dependencies,
    data_spec,
    dataset_recipes,
    dataset_section,
    dataset_units,
    deep_merge,
    discrete_vocabularies,
    external_recipe,
    format_sigma,
    noise_model,
    noise_token_model,
    patch_size,
    study_recipes,
    sweep_name,
    sweep_vocabularies,
    training_params,
    vocabulary_recipes,
)
from .record import OrderFree, order_free

__all__ = ["BASELINE", "DATASET_EVALUATION_KEYS", "DISCRETE_PREFIX", "EXTERNAL", "NOISE_PREFIX", "SCHEMA_PATH",
           "ConfigError", "DatasetPlan", "OrderFree", "Plan", "Recipe", "ReportPlan", "attacked_models",
           "attacked_pairs", "check_margin", "data_dependencies", "data_spec", "dataset_recipes", "dataset_section",
           "dataset_units", "deep_merge", "discrete_vocabularies", "external_recipe", "format_sigma", "load_params",
           "load_schema", "noise_model", "noise_token_model", "order_free", "patch_size", "resolve_plan",
           "retype_command_line", "study_recipes", "sweep_name", "sweep_vocabularies", "training_params", "validate",
           "vocabulary_recipes"]
