"""Runnable examples: `python -m examples.compare` (make demo), `python -m examples.study` (make study),
`python -m examples.imagenet` and `python -m examples.lm` (training at scale, see docs/experiments.md),
`python -m examples.train_resnet`."""
