# Formula lists -> the step0 table (raw LaTeX through normalize first, when step0.raw).


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


rule normalize:
    input:
        config["step0"]["input"],
    output:
        formulas="data/normalized/formulas.norm.txt",
        rejects="data/normalized/formulas.norm.txt.rejects.jsonl",
        report="reports/normalize.json",
    params:
        settings=settings("step0.raw", "step0.sha256"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/normalize.log",
    shell:
        "python -m pipeline normalize --settings {params.settings:q} {input:q} {output.formulas}"
        " --rejects {output.rejects} --report {output.report} 2>&1 | tee {log}"


rule step0:
    input:
        lists=config["step0"]["input"],
        normalized=rules.normalize.output.formulas,
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
        " --normalized {input.normalized}"
        " 2>&1 | tee {log}"
