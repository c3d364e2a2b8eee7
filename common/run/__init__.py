"""A run's folder: `fit` wraps the pure core (`common.core.loop.train_models`) with the resume file (`resume`),
a checkpoint each epoch, Ctrl-C between calls, and the files of a finished run (`results`)."""
