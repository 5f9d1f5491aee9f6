"""The data half: normalized formulas to training-ready shards, with TeX and the CPU only.

generate (the embedded default data) -> step0 (ids, splits) -> render (TeX, batched, isolated;
texsafe and texrun guard it) -> crop -> vocab -> shards (the ledger). Nothing here imports
TensorFlow, so the data stages start fast and run anywhere TeX does.
"""
