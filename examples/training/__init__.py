"""What `examples.imagenet` and `examples.lm` share: one implementation each of process setup
(`distributed`), data order and per-sample seeding (`sampling`), the training loop (`loop`),
checkpoints (`checkpoint`), the CSV log and progress bar (`log`), the command-line options both
scripts take (`options`), and what every example script shares on the command line: option types, the run
folder's claim and one-line errors (`cli`).

A script supplies a `loop.Task` (model, datasets, loss, evaluation metrics) and calls `loop.train`.
"""
