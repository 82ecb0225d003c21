#!/bin/bash
# Per-job GPU times of config/paper.yaml (README "GPU workstation"): trains the classifiers the
# sampled attacks need, then runs each sampled attack job for at most LIMIT seconds; the
# progress bars in logs/attack/ give the per-job time of the jobs stopped early, and
# benchmarks/rules/ the time of those that finished. Classifiers train for EPOCHS epochs (an
# attack's cost hardly depends on the weights). Run on a GPU machine from the repository root:
#   DATASETS=../shared/datasets EPOCHS=1 LIMIT=30 bash benchmarks/gpu_paper_jobs.sh
set -u
DATASETS=${DATASETS:-../shared/datasets} EPOCHS=${EPOCHS:-1} LIMIT=${LIMIT:-30}
extra=$(mktemp --suffix=.yaml)
sed "s#\.\./shared/datasets#$DATASETS#" config/offline.yaml > "$extra"
printf 'datasets:\n  mnist: {training: {epochs: %s}}\n  cifar10: {training: {epochs: %s}}\n' "$EPOCHS" "$EPOCHS" >> "$extra"
CF="--configfile config/paper.yaml $extra"
M=results/mnist C=results/cifar10
snakemake --cores all --resources gpu=1 --keep-going $CF -- $M/models/baseline/model.pt \
  $M/models/discrete-gauss/model.pt $C/models/baseline/model.pt $C/models/discrete-gauss/model.pt || exit 1
for t in $M/attacks/baseline/{pgd,apgd-ce,square} $M/attacks/discrete-gauss/{pgd,square,sspgd,bpda,tokenflip} \
         $C/attacks/baseline/{pgd,apgd-ce,square} $C/attacks/discrete-gauss/{square,tokenflip,bpda}; do
  start=$(date +%s)
  timeout "$LIMIT" snakemake --cores all --resources gpu=1 $CF -- "$t.json" > /dev/null 2>&1
  echo "$t: exit $?, $(( $(date +%s) - start )) s"
done
grep -h "" benchmarks/rules/train/*/*.tsv benchmarks/rules/attack/*/*/*.tsv 2>/dev/null | grep -v "^s" | cut -f1
