# Training and evaluation. Devices are the profile's to ask for (workflow/profiles/slurm requests
# a GPU for train, slurm-cpu none); the rule itself runs wherever it is started.


rule train:
    input:
        shards="data/shards",
        vocab="data/vocab/vocab.json",
    output:
        model=directory("models/best"),
        live=directory("dvclive"),
    params:
        settings=settings("model", "train", "augment", "render.dpi", "render.font", "crop"),
        launch=launcher,
    threads: 64  # capped at --cores: TensorFlow uses every core it gets
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/train.log",
    shell:
        "{params.launch}python -m pipeline train --settings {params.settings:q}"
        " --shards {input.shards} --vocab {input.vocab} --out {output.model}"
        " --checkpoints checkpoints --live {output.live} 2>&1 | tee {log}"


rule evaluate:
    input:
        model="models/best",
        shards="data/shards",
        curves="dvclive",
    output:
        metrics="metrics.json",
        predictions="reports/predictions.parquet",
        report=directory("reports/evaluation"),
        length_plot="reports/bleu_by_length.json",
    params:
        settings=settings("evaluate"),
    conda:
        "../envs/pipeline.yaml"
    log:
        "logs/evaluate.log",
    shell:
        "python -m pipeline evaluate --settings {params.settings:q} --model {input.model}"
        " --shards {input.shards} --metrics {output.metrics}"
        " --predictions {output.predictions} --report {output.report}"
        " --curves {input.curves} --length-plot {output.length_plot}"
        " 2>&1 | tee {log}"
