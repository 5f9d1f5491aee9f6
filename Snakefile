# Wiring only: settings come from params.yaml (shared with DVC), rules live in workflow/rules/,
# and every rule's work is done by a module of the `pipeline` package.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/cluster.smk"


rule all:
    default_target: True
    input:
        rules.evaluate.output,
