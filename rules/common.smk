# The study plan, derived from the validated config by the tokencert package.
import tokencert.config as tc

tc.validate(config)

DATASETS = list(config["study"]["datasets"])
VOCABS = tc.vocabulary_recipes(config)
DISCRETE_VOCABS = tc.discrete_vocabularies(config)
MODELS = tc.model_names(config)
CONDA_ENV = f"../envs/{config.get('conda_env', 'cpu')}.yaml"


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*",
    vocab=r"[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*",
    model=r"baseline|discrete-[A-Za-z0-9_.-]+|noise-[0-9.e+-]+",
    sigma=r"[0-9.e+-]+",

# Every rule file appends the final outputs of its stage; `rule all` requests them.
TARGETS = []


def stage_targets(*stages):
    """Final targets of the given result stages (results/<dataset>/<stage>/...)."""
    from pathlib import Path

    return [t for t in TARGETS if len(Path(t).parts) > 2 and Path(t).parts[2] in stages]
