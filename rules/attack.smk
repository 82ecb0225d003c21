# Attack stage: each attack of the suite on each attacked model, then the per-sample worst case.


rule attack:
    input:
        unpack(classifier_inputs),
        model=rules.train.output.model,
        baseline=lambda w: [model_file(w.dataset, tc.BASELINE)] if w.attack == "transfer" else [],
        # in a cascade (attacks.cascade), the cumulative outcome of the attack before this one
        previous=lambda w: [rules.attack.output.samples.format(dataset=w.dataset, model=w.model, attack=a)
                            for a in [PLAN.attacked_before(w.model, w.attack)] if a],
    output:
        summary="results/{dataset}/attacks/{model}/{attack}.json",
        samples="results/{dataset}/attacks/{model}/{attack}.csv",
    params:
        # what changes this attack's result: the budget, the test images, its own and PGD's settings
        # (apgd-ce and apgd-dlr share the `apgd` section)
        attacks=lambda w: tc.order_free({k: v for k, v in config["attacks"].items()
                                         if k in ("eps", "n_images", "pgd", w.attack, w.attack.split("-")[0], "cascade")
                                         or k == "check_images" and PLAN.cascade}),
        after=lambda w: PLAN.attacked_before(w.model, w.attack),
        units=units,
        code=code("attack.py"),
    log:
        "logs/attack/{dataset}/{model}/{attack}.log",
    benchmark:
        "benchmarks/rules/attack/{dataset}/{model}/{attack}.tsv"
    # 1 thread, measured (default study, 2 idle cores): 148 s wall with every rule at 1 thread
    # against 196 s with attack/certify/exact/vocab at 2 (two 1-thread jobs beat one 2-thread job);
    # one Square job: 20.7 s (1 thread) vs 19.4 s (2) idle, 19.7 s vs 34.3 s beside a busy core
    # (OpenMP spin-waiting). Raising it (--set-threads) on a shared machine: export
    # OMP_WAIT_POLICY=PASSIVE (22.2 s under load, 22.2 s idle). README "Speed" has the figures.
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/attack.py"


rule attack_worst:
    input:
        samples=lambda w: attack_files(w.dataset, w.model, "samples"),
        summaries=lambda w: attack_files(w.dataset, w.model),
        manifest=rules.data.output.manifest,
    output:
        summary=f"results/{{dataset}}/attacks/{{model}}/{WORST}.json",
        samples=f"results/{{dataset}}/attacks/{{model}}/{WORST}.csv",
    params:
        units=units,
        token_classifier=lambda w: recipe(w).vocab is not None,  # from the plan, not the name
        cascade=lambda w: PLAN.cascade_of(w.model),
        code=code("attack_worst.py"),
    log:
        "logs/attack_worst/{dataset}/{model}.log",
    benchmark:
        "benchmarks/rules/attack_worst/{dataset}/{model}.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/attack_worst.py"


TARGETS += [rules.attack_worst.output.summary.format(dataset=d, model=m) for d in DATASETS
            for m in PLAN.attacked_models() if m in PLAN.datasets[d].models]
