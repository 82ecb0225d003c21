# Certificate stage: every deterministic certificate of the family (tokencert.certificates) on every
# classifier it applies to, one rule template; the attacked ones are bracketed by the suite's worst case.


rule certificate:
    input:
        unpack(classifier_inputs),
        unpack(certificate_attacks),
        model=rules.train.output.model,
    output:
        summary="results/{dataset}/{cert}/{model}.json",
        samples="results/{dataset}/{cert}/{model}.csv",
    params:
        # its own params section (tokencert.certificates.Certificate.settings), with the classifier's own
        # overrides (<folder>.models.<model>): a change reruns only the jobs it reaches
        settings=lambda w: tc.order_free(by_folder(w.cert).settings(config, w.model)),
        radii=config["radii"],
        units=units,
        code=lambda w: code("certificate.py", by_folder(w.cert).module),
    log:
        "logs/certificate/{dataset}/{cert}/{model}.log",
    benchmark:
        "benchmarks/rules/certificate/{dataset}/{cert}/{model}.tsv"
    # 1 thread: two 1-thread jobs on 2 cores beat one 2-thread job (measured in rules/attack.smk)
    threads: 1
    resources:
        gpu=lambda w: int(by_folder(w.cert).gpu),
        mem_mb=8000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/certificate.py"


TARGETS += [rules.certificate.output.summary.format(dataset=d, cert=c.folder, model=m) for d in DATASETS
            for c in CERTIFICATES.values() for m in PLAN.certified_models(d, c)]
