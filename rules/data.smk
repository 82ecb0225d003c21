# Data stage: decode a named dataset into uint8 tensors and a manifest.


rule data:
    input:
        lambda w: [f for d in tc.data_dependencies(config, w.dataset) for f in data_files(d).values()],
    output:
        train="data/{dataset}/train.pt",
        test="data/{dataset}/test.pt",
        manifest="data/{dataset}/manifest.json",
    params:
        spec=lambda w: tc.order_free(tc.data_spec(config, w.dataset)),
        code=code("data.py"),
        cache_dir="data/.cache",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/rules/data/{dataset}.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/data.py"


TARGETS += expand("data/{dataset}/manifest.json", dataset=DATASETS)
