# The fan-out stages: one job per chunk, so `snakemake -j8 render` renders 8 chunks at once.


rule render_chunk:
    input:
        "data/step0/formulas.parquet",
    output:
        "data/render/chunk-{chunk}.parquet",
    params:
        settings=settings("render"),
        chunk=lambda wildcards: int(wildcards.chunk),
        cache=CHUNK_CACHE,
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/render/chunk-{chunk}.log",
    shell:
        "python -m pipeline render --settings {params.settings:q} --formulas {input}"
        " --chunk {params.chunk} --out {output} --cache {params.cache} 2>&1 | tee {log}"


rule render:
    input:
        expand("data/render/chunk-{chunk}.parquet", chunk=CHUNKS),


rule crop_chunk:
    input:
        rendered="data/render/chunk-{chunk}.parquet",
        formulas="data/step0/formulas.parquet",
    output:
        "data/crop/chunk-{chunk}.parquet",
    params:
        settings=settings("crop", "render.dpi"),
        cache=CHUNK_CACHE,
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/crop/chunk-{chunk}.log",
    shell:
        "python -m pipeline crop --settings {params.settings:q} --rendered {input.rendered}"
        " --formulas {input.formulas} --out {output} --cache {params.cache} 2>&1 | tee {log}"


rule crop:
    input:
        expand("data/crop/chunk-{chunk}.parquet", chunk=CHUNKS),
