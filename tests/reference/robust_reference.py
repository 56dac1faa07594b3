#!/usr/bin/python3
"""Independent float64 reference for the robust aggregation rules of fed/robust_aggregation.h,
written from the papers' formulas (numpy only).

    /usr/bin/python3 tests/reference/robust_reference.py IN.json OUT.json

IN   {"results": [[float, ...], ...],   each result's parameters, all tensors flattened in order
      "trim_fraction": float, "byzantine": int, "selected": [int, ...]}
OUT  {"median": [float, ...],                       np.median over the results
      "trimmed_mean": [float, ...],                  drop floor(beta*n) at each end, mean the rest
      "krum": {"<m>": [index, ...], ...}}            multi-Krum's m choices, lowest score first
"""

import json
import math
import sys

import numpy as np


def trimmed_mean(x, beta):
    n = x.shape[0]
    k = int(math.floor(beta * n))
    return np.sort(x, axis=0)[k:n - k].mean(axis=0)


def krum(x, f, m):
    # Blanchard et al. 2017: score(i) = sum of squared distances to the n - f - 2 nearest others.
    n = x.shape[0]
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    nearest = min(n - 1, max(1, n - f - 2))
    scores = [np.sort(np.delete(d[i], i))[:nearest].sum() for i in range(n)]
    return [int(i) for i in np.argsort(scores, kind="stable")[:m]]


def main():
    spec = json.load(open(sys.argv[1]))
    x = np.array(spec["results"], np.float64)
    out = {
        "median": np.median(x, axis=0).tolist(),
        "trimmed_mean": trimmed_mean(x, spec["trim_fraction"]).tolist(),
        "krum": {str(m): krum(x, spec["byzantine"], m) for m in spec["selected"]},
    }
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
