"""On a many-core CPU: why the fast optimisation step loses to the reference's with many threads."""
import statistics, sys, time
from dataclasses import replace
import torch
from torch.profiler import ProfilerActivity, profile
from dqnbench.bench.subjects import REFERENCE_SUBJECT, fast_subject
from dqnbench.bench.workload import optimize_call, render_screens
from dqnbench.nets import DQN

dev = torch.device("cpu")
fast = fast_subject()
native_bn = replace(fast, name="fast-nativeBN",
                    make_network=lambda *a: DQN(*a).to(memory_format=torch.channels_last))
contig = replace(fast, name="fast-contig",
                 make_network=lambda *a: fast.make_network(*a).to(memory_format=torch.contiguous_format))
subjects = [REFERENCE_SUBJECT, fast, native_bn, contig]
screens = {s.name: render_screens(s, 64, dev) for s in subjects}
calls = {s.name: optimize_call(s, dev, screens[s.name]) for s in subjects}
for threads in [int(t) for t in sys.argv[1:]]:
    torch.set_num_threads(threads)
    for fn in calls.values():
        for _ in range(3): fn()
    res = {k: [] for k in calls}
    keys = list(calls)
    for r in range(8):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            t = time.perf_counter()
            for _ in range(5): calls[k]()
            res[k].append((time.perf_counter() - t) / 5)
    print(f"threads {threads}: " + ", ".join(f"{k} {statistics.median(v)*1e3:.2f} ms" for k, v in res.items()), flush=True)
torch.set_num_threads(int(sys.argv[1]))
for name in ("reference", "fast"):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10): calls[name]()
    print(name, f"threads {torch.get_num_threads()}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=16, max_name_column_width=40))
