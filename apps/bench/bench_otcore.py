"""Benchmark otcore's Sinkhorn against POT and GeomLoss (protocol of ot.md §9).

Each (library, configuration) runs in a fresh subprocess. The harness measures, itself and in
float64, the L1 marginal violation ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ of the plan each library returns,
and searches for the smallest budget (iterations, or GeomLoss's ``scaling``) that reaches
1e-3. Reported: the median time at that budget (cost construction included), iterations,
time per iteration, and peak memory (RSS growth over the post-setup baseline).

    python apps/bench/bench_otcore.py            # full suite (about 30-40 min on 2 cores)
    python apps/bench/bench_otcore.py --quick    # smoke run (about 2 min)

Writes docs/benchmarks/otcore.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks" / "otcore.md"
TARGET = 1e-3


# --------------------------------------------------------------------------- child side
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data(n: int, d: int, seed: int = 0):
    """P1-like problem: a noisy sphere against a shifted blob, random non-uniform weights."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x = x / x.norm(dim=1, keepdim=True) + 0.05 * torch.randn(n, d, generator=g)
    y = 0.5 * torch.randn(n, d, generator=g) + 0.3
    a = torch.rand(n, generator=g) + 0.5
    b = torch.rand(n, generator=g) + 0.5
    return x, y, a / a.sum(), b / b.sum()


def _violation(x, y, a, b, f, g, eps, half=False):
    """L1 marginal violation of P = a⊗b·exp((f⊕g − C)/ε), float64, in row chunks."""
    import torch

    x, y, a, b, f, g = (t.double() for t in (x, y, a, b, f, g))
    col = torch.zeros_like(b)
    row_err = 0.0
    for s in range(0, len(x), 2048):
        C = torch.cdist(x[s : s + 2048], y) ** 2
        if half:
            C = C / 2
        P = a[s : s + 2048, None] * b[None] * torch.exp((f[s : s + 2048, None] + g[None] - C) / eps)
        row_err += float((P.sum(1) - a[s : s + 2048]).abs().sum())
        col += P.sum(0)
    return row_err + float((col - b).abs().sum())


def _timed(fn, repeats):
    fn()  # warm-up (KeOps compilation, allocator)
    ts = []
    t_end = time.perf_counter() + 10.0
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
        if time.perf_counter() > t_end and len(ts) >= 2:
            break
    return statistics.median(ts), out


def child(cfg: dict) -> dict:
    import torch

    torch.set_num_threads(2)
    x, y, a, b = _data(cfg["n"], cfg["d"])
    C0 = torch.cdist(x[:2000], y[:2000]) ** 2
    eps = cfg["eps_rel"] * float(C0.mean())  # ε relative to mean(C) (estimated on 2000²)
    lib, budget = cfg["lib"], cfg.get("budget")
    base = _rss_mb()
    res: dict = {"eps": eps}

    if lib == "otcore":
        import otcore

        def run():
            geom = otcore.PointCloud(x, y, backend=cfg.get("backend", "auto"))
            return otcore.sinkhorn(
                geom,
                a,
                b,
                epsilon=eps,
                tol=budget or TARGET,
                max_iter=cfg.get("max_iter", 100000),
                warn=False,
            )

        t, out = _timed(run, cfg["repeats"])
        res.update(iters=out.n_iters, f=out.f, g=out.g, backend=out.geom.backend)
    elif lib in ("pot_torch", "pot_numpy"):
        import ot

        xs, ys, as_, bs = (x, y, a, b) if lib == "pot_torch" else (t.numpy() for t in (x, y, a, b))

        def run():
            M = ot.dist(xs, ys)
            _, log = ot.sinkhorn(
                as_,
                bs,
                M,
                eps,
                method="sinkhorn_log",
                numItermax=budget,
                stopThr=0.0,
                log=True,
                warn=False,
            )
            return log

        t, log = _timed(run, cfg["repeats"])
        lu, lv = (torch.as_tensor(log["log_u"]), torch.as_tensor(log["log_v"]))
        res.update(
            iters=budget,
            f=eps * (lu - torch.log(torch.as_tensor(as_))),
            g=eps * (lv - torch.log(torch.as_tensor(bs))),
        )
    elif lib in ("geomloss_tensorized", "geomloss_online"):
        from geomloss import SamplesLoss
        from geomloss._legacy.sinkhorn_divergence import epsilon_schedule, max_diameter

        blur = math.sqrt(eps / 2)  # GeomLoss: cost ‖x−y‖²/2, ε = blur²
        backend = lib.split("_")[1]
        loss = SamplesLoss(
            "sinkhorn",
            p=2,
            blur=blur,
            scaling=budget,
            debias=False,
            potentials=True,
            backend=backend,
        )
        t, (F, G) = _timed(lambda: loss(a, x, b, y), cfg["repeats"])
        diam = max_diameter(x.view(-1, x.shape[-1]), y.view(-1, y.shape[-1]))
        res.update(iters=len(epsilon_schedule(2, diam, blur, budget)), f=2 * F, g=2 * G)
    else:
        raise ValueError(lib)
    res["time_s"] = t
    res["peak_mb"] = _rss_mb() - base
    f, g = res.pop("f"), res.pop("g")
    res["violation"] = _violation(x, y, a, b, f.view(-1), g.view(-1), eps)
    if cfg.get("exp_ref"):
        C = torch.cdist(x, y) ** 2
        t_exp, _ = _timed(lambda: (torch.exp(C), torch.exp(C)), 5)
        res["two_exp_s"] = t_exp
    return res


def child_batched(cfg: dict) -> dict:
    import torch

    torch.set_num_threads(2)
    B, n = cfg["B"], cfg["n"]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(B, n, 3, generator=g), torch.randn(B, n, 3, generator=g) + 0.5
    C = torch.cdist(x, y) ** 2
    eps = cfg["eps_rel"] * C.mean((1, 2))
    lib = cfg["lib"]
    if lib == "otcore":
        import otcore

        def run():
            return otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=eps, tol=TARGET, warn=False)

        t, out = _timed(run, 5)
        P, iters, k = out.plan(), out.n_iters, B
    else:  # a Python loop of POT sinkhorn_log over the first k problems
        import ot

        k = cfg["k"]
        u = torch.full((n,), 1.0 / n)

        def run():
            return [
                ot.sinkhorn(
                    u,
                    u,
                    ot.dist(x[i], y[i]),
                    float(eps[i]),
                    method="sinkhorn_log",
                    numItermax=cfg["budget"],
                    stopThr=0.0,
                    warn=False,
                )
                for i in range(k)
            ]

        t, Ps = _timed(run, 1)
        P, iters = torch.stack(Ps), cfg["budget"]
    u = torch.full((n,), 1.0 / n, dtype=torch.float64)
    viol = (P.double().sum(-1) - u).abs().sum(-1) + (P.double().sum(-2) - u).abs().sum(-1)
    return {
        "time_s": t * B / k,
        "measured_problems": k,
        "iters": iters,
        "violation": float(viol.max()),
    }


# --------------------------------------------------------------------------- parent side
def spawn(cfg: dict, timeout: float = 900) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    env.setdefault("KEOPS_CACHE_FOLDER", str(ROOT / ".cache" / "keops"))
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(cfg)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout > {timeout:.0f}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(lines[-1])


def to_tolerance(cfg: dict, budgets: list, timeout: float) -> dict:
    """Smallest budget whose harness-measured violation is ≤ 1e-3 (budgets in order)."""
    last = {}
    for budget in budgets:
        res = spawn({**cfg, "budget": budget}, timeout)
        res["budget"] = budget
        last = res
        if "error" in res or res["violation"] <= TARGET:
            return res
    last["error"] = f"violation {last['violation']:.1e} > 1e-3 at the largest budget"
    return last


def pot_budgets(start: int = 10) -> list[int]:
    out, k = [], start
    while k <= 20000:
        out.append(k)
        k = int(k * 1.5) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--targets",
        action="store_true",
        help="only the issue's target rows: N=2000 d=3 ε=0.01, KeOps N=20k, batched",
    )
    ap.add_argument("--child")
    ap.add_argument("--child-batched")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.child_batched:
        print(json.dumps(child_batched(json.loads(args.child_batched))))
        return

    quick = args.quick
    sizes = [500, 1000] if quick else [500, 1000, 2000, 5000]
    dims = [3] if quick else [3, 32]
    epss = [0.05, 0.01]
    if args.targets:
        sizes, dims, epss = [2000], [3], [0.01]
    rows = []
    for n in sizes:
        for d in dims:
            for e in epss:
                base = {"n": n, "d": d, "eps_rel": e, "repeats": 3 if n <= 2000 else 2}
                ours = spawn({**base, "lib": "otcore", "backend": "dense", "exp_ref": True})
                ours["budget"] = "tol=1e-3"
                rows.append(("otcore (dense)", base, ours))
                print(n, d, e, "otcore", ours, flush=True)
                peers = [
                    ("GeomLoss tensorized", "geomloss_tensorized", [0.5, 0.7, 0.9, 0.95, 0.99])
                ]
                if n <= 2000 and not (quick and n > 500):
                    peers.append(("POT torch sinkhorn_log", "pot_torch", pot_budgets()))
                if n <= 1000 and not quick:
                    peers.append(("POT numpy sinkhorn_log", "pot_numpy", pot_budgets()))
                for label, lib, budgets in peers:
                    r = to_tolerance(
                        {**base, "lib": lib, "repeats": 1 if "pot" in lib else 3},
                        budgets,
                        timeout=600,
                    )
                    rows.append((label, base, r))
                    print(n, d, e, lib, r, flush=True)

    keops_rows = []
    for n in [10000] if quick else [20000] if args.targets else [10000, 20000]:
        base = {"n": n, "d": 3, "eps_rel": 0.05, "repeats": 2, "max_iter": 10}
        ours = spawn({**base, "lib": "otcore", "backend": "keops", "budget": 1e-12}, 1800)
        gl = spawn({**base, "lib": "geomloss_online", "budget": 0.5, "repeats": 2}, 1800)
        keops_rows.append((n, ours, gl))
        print(n, "keops", ours, gl, flush=True)

    batch = {"B": 256, "n": 64, "eps_rel": 0.01}
    ours_b = json.loads(_run_batched({**batch, "lib": "otcore"}))
    loop_b = {}
    for budget in pot_budgets(50):
        loop_b = json.loads(_run_batched({**batch, "lib": "pot_loop", "k": 8, "budget": budget}))
        loop_b["budget"] = budget
        if loop_b.get("violation", 1) <= TARGET:
            break
    print("batched", ours_b, loop_b, flush=True)
    write_report(
        rows,
        keops_rows,
        (ours_b, loop_b),
        "--targets" if args.targets else "--quick" if quick else "",
    )


def _run_batched(cfg):
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, __file__, "--child-batched", json.dumps(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return lines[-1] if lines else json.dumps({"error": proc.stderr[-200:]})


def _fmt(r: dict, key: str, spec: str) -> str:
    return "—" if key not in r or r[key] is None else format(r[key], spec)


def write_report(rows, keops_rows, batched, flag) -> None:
    import torch

    lines = [
        "## otcore: Sinkhorn vs POT and GeomLoss",
        "",
        f"Command: `python apps/bench/bench_otcore.py{' ' + flag if flag else ''}` "
        f"(run by `nox -s bench`). Date {date.today()}, {platform.processor() or 'CPU'}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, float32, 2 threads, one fresh "
        "process per row. Time to a harness-measured L1 marginal violation ≤ 1e-3 "
        "(recomputed in float64 from the returned potentials), cost matrix included; peers "
        "at the smallest budget (iterations; GeomLoss `scaling`) that reaches it. Problem: "
        "noisy sphere vs shifted Gaussian blob, random weights, ε relative to mean(C). "
        "GeomLoss halves the cost, so it runs with blur = √(ε/2).",
        "",
        "| N | d | ε/mean(C) | solver | budget | iters | time (s) | ms/iter | L1 viol. "
        "| peak MB | vs otcore |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = {}
    for label, base, r in rows:
        key = (base["n"], base["d"], base["eps_rel"])
        if label.startswith("otcore") and "error" not in r:
            ref[key] = r["time_s"]
        if "error" in r:
            lines.append(
                f"| {key[0]} | {key[1]} | {key[2]} | {label} | {r.get('budget', '')} | "
                f"| | | | | {r['error']} |"
            )
            continue
        ms = 1e3 * r["time_s"] / max(r["iters"], 1)
        ratio = r["time_s"] / ref[key] if key in ref else float("nan")
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {label} | {r.get('budget', '')} | {r['iters']} "
            f"| {r['time_s']:.3f} | {ms:.2f} | {r['violation']:.1e} | {r['peak_mb']:.0f} "
            f"| {ratio:.2f}× |"
        )
    lines += [
        "",
        "Time per otcore iteration against two `torch.exp` passes over the cost "
        "matrix (the issue's yardstick), same process:",
        "",
        "| N | d | ε/mean(C) | otcore ms/iter | 2×exp ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for label, base, r in rows:
        if label.startswith("otcore") and "two_exp_s" in r:
            ms = 1e3 * r["time_s"] / r["iters"]
            lines.append(
                f"| {base['n']} | {base['d']} | {base['eps_rel']} | {ms:.2f} | "
                f"{1e3 * r['two_exp_s']:.2f} | {ms / (1e3 * r['two_exp_s']):.2f} |"
            )
    lines += [
        "",
        "KeOps (online) at large N, d = 3, ε = 0.05·mean(C): 10 iterations for otcore; "
        "GeomLoss online at scaling 0.5 (its own iteration count). Time per iteration and "
        "peak RSS growth; KeOps compilation excluded (warm-up call).",
        "",
        "| N | otcore s/iter | otcore peak MB | GeomLoss online s/iter | GeomLoss peak MB "
        "| ratio (ours/GeomLoss) |",
        "|---|---|---|---|---|---|",
    ]
    for n, o, g in keops_rows:
        so = o["time_s"] / o["iters"] if "error" not in o else float("nan")
        sg = g["time_s"] / g["iters"] if "error" not in g else float("nan")
        lines.append(
            f"| {n} | {so:.3f} | {_fmt(o, 'peak_mb', '.0f')} | {sg:.3f} | "
            f"{_fmt(g, 'peak_mb', '.0f')} | {so / sg:.2f} |"
        )
    ob, lb = batched
    lines += [
        "",
        "Batched: B = 256 problems of n = 64, d = 3, ε = 0.01·mean(C) per problem, to "
        "a max L1 violation ≤ 1e-3. The POT loop (`sinkhorn_log`, one call per problem) "
        "is timed on the first 8 problems and scaled to 256.",
        "",
        "| solver | iters | time for 256 (s) | max L1 viol. |",
        "|---|---|---|---|",
        f"| otcore batched (B, n, m) | {ob.get('iters')} | {_fmt(ob, 'time_s', '.3f')} | "
        f"{_fmt(ob, 'violation', '.1e')} |",
        f"| POT loop of sinkhorn_log | {lb.get('iters')} | {_fmt(lb, 'time_s', '.2f')} | "
        f"{_fmt(lb, 'violation', '.1e')} |",
    ]
    if "time_s" in ob and "time_s" in lb:
        lines.append(
            f"\nSpeed-up of the batched solver over the loop: {lb['time_s'] / ob['time_s']:.0f}×."
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
