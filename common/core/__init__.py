"""The pure training core (the lowest floor): `loop.train_models` trains N >= 1 models on arrays with the
compiled steps of `step` (jit, shardings, donation) on the stacked states of `state`; `batches` is what the step
needs from the data, `config` and `errors` what every floor shares, `history` and `stats` the numerics of
results. Nothing here touches a file, a lock, a signal or the process."""
