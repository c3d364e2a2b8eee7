"""The training core: `fit` (fit.py) runs N >= 1 models through `loop` (the epochs, no files) with the compiled
steps of `step` (jit, shardings, donation) on the state of `state`; `resume` and `results` own the files.
See docs/architecture.md."""
