#!/usr/bin/python3
"""Independent float64 reference for the strategies of fed/strategy.h, written from the formulas
(numpy only).

    /usr/bin/python3 tests/reference/strategy_reference.py IN.json OUT.json

IN   {"strategy": {"name": "fedavg|fedprox|fedadagrad|fedadam|fedyogi", "eta", "beta1", "beta2",
                   "tau", "initial_accumulator" (negative: tau²), "bias_correction"},
      "global": {tensor name: nested list},        the global parameters before the first round
      "rounds": [[{"num_examples": int, "params": {tensor name: nested list}}, ...], ...]}
OUT  {"globals": [{tensor name: nested list}, ...]}   the global parameters after each round
"""

import json
import sys

import numpy as np


def weighted_mean(clients, name):
    total = sum(c["num_examples"] for c in clients)
    return sum(c["num_examples"] * np.array(c["params"][name], np.float64) for c in clients) / total


def second_moment(rule, v, delta_squared, beta2):
    if rule == "fedadagrad":
        return v + delta_squared
    if rule == "fedadam":
        return beta2 * v + (1 - beta2) * delta_squared
    if rule == "fedyogi":
        return v - (1 - beta2) * delta_squared * np.sign(v - delta_squared)
    raise ValueError("unknown strategy " + rule)


def run(spec):
    s = spec["strategy"]
    x = {name: np.array(value, np.float64) for name, value in spec["global"].items()}
    v0 = s["tau"] ** 2 if s["initial_accumulator"] < 0 else s["initial_accumulator"]
    m = {name: np.zeros_like(value) for name, value in x.items()}
    v = {name: np.full_like(value, v0) for name, value in x.items()}
    corrected = s["bias_correction"] and s["name"] != "fedadagrad"
    globals_after = []
    for t, clients in enumerate(spec["rounds"], start=1):
        for name in x:
            mean = weighted_mean(clients, name)
            if s["name"] in ("fedavg", "fedprox"):
                x[name] = mean
                continue
            delta = mean - x[name]
            m[name] = s["beta1"] * m[name] + (1 - s["beta1"]) * delta
            v[name] = second_moment(s["name"], v[name], delta * delta, s["beta2"])
            m_hat = m[name] / (1 - s["beta1"] ** t) if corrected else m[name]
            v_hat = v[name] / (1 - s["beta2"] ** t) if corrected else v[name]
            x[name] = x[name] + s["eta"] * m_hat / (np.sqrt(v_hat) + s["tau"])
        globals_after.append({name: value.tolist() for name, value in x.items()})
    return {"globals": globals_after}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        result = run(json.load(f))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
