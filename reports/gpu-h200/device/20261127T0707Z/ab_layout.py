"""A/B on CUDA: the fast network in channels-last (as shipped) vs contiguous layout, reference beside them."""
import json, statistics, sys, time
from dataclasses import replace
import torch
from itertools import islice
from dqnbench.bench.subjects import REFERENCE_SUBJECT, fast_subject, fast_graphed_subject
from dqnbench.bench.workload import network, optimize_call, render_screens, rollout, TrainStep

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

def contiguous(subject, name):
    make = subject.make_network
    return replace(subject, name=name, make_network=lambda *a: make(*a).to(memory_format=torch.contiguous_format))

fast = fast_subject(); graphed = fast_graphed_subject()
subjects = [REFERENCE_SUBJECT, fast, contiguous(fast, "fast-contig")]
if dev.type == "cuda":
    subjects += [graphed, contiguous(graphed, "graphed-contig")]
screens = {s.name: render_screens(s, 64, dev) for s in subjects}

def states(scr, b):
    return torch.cat([st.transition[0] for st in islice(rollout(scr), b)])

def fwd(s, b):
    net = network(s, dev).eval(); x = states(screens[s.name], b)
    def f():
        with torch.no_grad(): return net(x)
    return f

calls = {}
for s in subjects:
    if "graphed" not in s.name:
        calls[("forward-b1", s.name)] = fwd(s, 1)
        calls[("forward-b128", s.name)] = fwd(s, 128)
    calls[("optimize", s.name)] = optimize_call(s, dev, screens[s.name])
    calls[("train-step", s.name)] = TrainStep(s, dev, screens=screens[s.name], warm=1000)

def per_call(fn, n):
    sync(); t = time.perf_counter()
    for _ in range(n): fn()
    sync(); return (time.perf_counter() - t) / n

for fn in calls.values():
    for _ in range(5): fn()
results = {k: [] for k in calls}
keys = list(calls)
for r in range(12):
    for k in (keys if r % 2 == 0 else keys[::-1]):
        results[k].append(per_call(calls[k], 10 if k[0] == "train-step" else 25))
out = {f"{g}/{n}": round(statistics.median(v) * 1e6, 1) for (g, n), v in results.items()}
for k, v in out.items(): print(f"{k:40s} {v:10.1f} us")
print(json.dumps({"device": str(dev), "name": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "median_us": out}))
