"""`python benchmarks/reference_torch.py`: the same LeNet5 and recurrent nets in PyTorch (eager), timed the way
`python -m benchmarks` times ours, for a side-by-side comparison in one session on one machine.

PyTorch is not a dependency of this project: run this file with any Python that has `torch` and `numpy`
(e.g. `pip install torch --index-url https://download.pytorch.org/whl/cpu`). It imports nothing from the project.
Prints one JSON line per model.
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch
from torch import nn


class LeNet5(nn.Module):
    """conv5x5(32)+ReLU -> BN -> pool -> conv5x5(64)+ReLU -> BN -> pool -> fc1024+ReLU -> dropout(0.8) -> fc10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 5, padding=2), nn.Conv2d(32, 64, 5, padding=2)
        # Keras's defaults, as ours: momentum 0.99 (PyTorch counts it as 1 - 0.99), epsilon 1e-3.
        self.bn1, self.bn2 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01), nn.BatchNorm2d(64, eps=1e-3, momentum=0.01)
        self.fc1, self.fc2 = nn.Linear(7 * 7 * 64, 1024), nn.Linear(1024, 10)
        self.dropout = nn.Dropout(0.8)
        for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.xavier_normal_(layer.weight)
            nn.init.constant_(layer.bias, 0.1)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.bn1(torch.relu(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(self.bn2(torch.relu(self.conv2(x))), 2)
        return self.fc2(self.dropout(torch.relu(self.fc1(x.flatten(1)))))

    def penalty(self):
        return (0.01 * (self.conv1.weight.square().sum() + self.conv2.weight.square().sum())
                + 0.005 * self.fc1.weight.square().sum())


class Recurrent(nn.Module):
    """One recurrent layer over the 28 rows, batch norm on its last output, a dense head."""

    def __init__(self, cell: str, hidden: int):
        super().__init__()
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](28, hidden, batch_first=True)
        self.bn, self.fc = nn.BatchNorm1d(hidden, eps=1e-3, momentum=0.01), nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(self.bn(out[:, -1]))

    def penalty(self):
        return torch.zeros(())


def bench(name, model, lr, batch_size, shape, windows=5, steps=20, channels_last=False):
    opt = torch.optim.NAdam(model.parameters(), lr=lr)
    model.train()
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(8):
        x = torch.from_numpy(rng.random((batch_size,) + shape, dtype=np.float32))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        batches.append((x, torch.from_numpy(rng.integers(0, 10, batch_size))))

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y) + model.penalty()
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    step(*batches[0]).item()
    first = time.perf_counter() - t0
    for b in batches[:3]:
        step(*b)
    rates = []
    for w in range(windows):
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(*batches[(w * steps + i) % 8])
        loss.item()
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    print(json.dumps({"model": name, "framework": f"pytorch {torch.__version__} eager",
                      "threads": torch.get_num_threads(),
                      "batch_size": batch_size, "train_images_per_sec": round(statistics.median(rates), 1),
                      "first_step_seconds": round(first, 3)}), flush=True)


def main(models=("lenet5", "rnn-64", "lstm-128", "gru-128"), threads=None):
    """Times the named models; e.g. `python -c "import reference_torch as r; r.main(['lstm-128'])"` from this
    folder for one of them (benchmarks/interleaved.py does that). `threads`: torch.set_num_threads (default:
    PyTorch's own, one per core)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    for name in models:
        if name == "lenet5":
            bench(name, LeNet5().to(memory_format=torch.channels_last), 1.7e-4, 50, (1, 28, 28), channels_last=True)
        else:
            cell, hidden = name.split("-")
            bench(name, Recurrent(cell, int(hidden)), 1e-3, 32, (28, 28), steps=50)


if __name__ == "__main__":
    main()
