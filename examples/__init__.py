"""Runnable examples: `python -m examples.compare`, `python -m examples.train_resnet`."""
