# tokencert: certified robustness through input sparsity.
#   default study (embedded mnist5k):  snakemake --cores all
#   full study:                        snakemake --cores all --configfile config/paper.yaml
#   report only, from results:         snakemake --cores all report
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs (here, or through Slurm) inherit it: OpenMP workers sleep when idle instead of spinning, which
# only matters for a job given more than 1 thread (--set-threads); tokencert.runtime.use_threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/vocab.smk"
include: "rules/certify.smk"
include: "rules/train.smk"
include: "rules/smooth.smk"
include: "rules/attack.smk"
include: "rules/certificate.smk"
include: "rules/report.smk"
include: "rules/dvc.smk"


# A real run (not a dry run) with the profile's placeholders left in place stops before any job.
onstart:
    defaults = workflow.resource_settings.default_resources
    placeholders = [a.split("=")[0] for a in (defaults.args if defaults else None) or [] if "CHANGE_ME" in a]
    if placeholders:
        sys.exit(
            f"profiles/slurm: set {' and '.join(placeholders)} in profiles/slurm/config.yaml "
            f"(or --default-resources {' '.join(p + '=...' for p in placeholders)})"
        )


# Light jobs run on the submitting node under a cluster executor (profiles/slurm).
localrules:
    all,
    data,
    attack_worst,
    report,
    stamp_models,
    stamp_evaluation,


# Every result the report reads is requested too, so a deleted one is rebuilt (Snakemake
# would otherwise treat a missing intermediate file below up-to-date outputs as done).
rule all:
    default_target: True
    input:
        TARGETS,
        unpack(report_inputs),
        TARGETS_REPORT,
