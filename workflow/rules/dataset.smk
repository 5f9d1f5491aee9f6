# Vocabulary and training-ready shards.


rule vocab:
    input:
        formulas="data/step0/formulas.parquet",
        crop=expand("data/crop/chunk-{chunk}.parquet", chunk=CHUNKS),
    output:
        vocab="data/vocab/vocab.json",
        report="reports/vocab.json",
    params:
        settings=settings("vocab"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/vocab.log",
    shell:
        "python -m pipeline vocab --settings {params.settings:q} --formulas {input.formulas}"
        " --crop {input.crop} --out {output.vocab} --report {output.report} 2>&1 | tee {log}"


rule shards:
    input:
        formulas="data/step0/formulas.parquet",
        crop=expand("data/crop/chunk-{chunk}.parquet", chunk=CHUNKS),
        vocab="data/vocab/vocab.json",
    output:
        shards=directory("data/shards"),
        report="reports/data.json",
    params:
        settings=settings("shards"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/shards.log",
    shell:
        "python -m pipeline shards --settings {params.settings:q} --formulas {input.formulas}"
        " --crop {input.crop} --vocab {input.vocab} --out {output.shards}"
        " --report {output.report} 2>&1 | tee {log}"
