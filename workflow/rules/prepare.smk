# Formula lists -> the step0 table.


rule generate:
    output:
        "data/generated/formulas.norm.txt",
    params:
        settings=settings("generate"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/generate.log",
    shell:
        "python -m pipeline generate --settings {params.settings:q} --out {output} 2>&1 | tee {log}"


rule step0:
    input:
        config["step0"]["input"],
    output:
        formulas="data/step0/formulas.parquet",
        rejected="data/step0/rejected.parquet",
        report="reports/step0.json",
    params:
        settings=settings("step0"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/step0.log",
    shell:
        "python -m pipeline step0 --settings {params.settings:q}"
        " --out {output.formulas} --rejected {output.rejected} --report {output.report}"
        " 2>&1 | tee {log}"
