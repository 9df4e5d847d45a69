"""Trainings on a Ray cluster beside the same work without it, measured in one run.

    MNIST_PATH=../shared/data/mnist.npz python bench/bench_ray.py [--epochs 3] [--presets mlp,cnn]

1. **Overhead of the Ray path**: one 1-epoch `mlp` training, from submit to the run in the
   store, through local worker processes (`LocalJobs`) and through a Ray head node on loopback
   with 2 CPUs (`RayJobs`, the default 2 CPUs per job); the difference is the Ray path's cost.
2. **A sweep on two nodes**: a cluster of two 1-CPU nodes on loopback (the head and a second
   node), a 4-trial `mlp` sweep (learning rate 0.001, 0.003 x dropout 0.2, 0.4; the preset's
   20 epochs with early stopping, or `--epochs`) with 1 CPU per job: the trials run two at a
   time. Beside it, the same four trials submitted one after another on the same cluster (one
   at a time, each on 1 CPU). Target: the sweep takes at most 0.6x as long.
3. **Per job, for docs/scale.md**: each preset of `--presets` trained for one epoch on the
   2-CPU head node: seconds per epoch and the peak memory of its trainer process.

Prints each figure with its target. Time nothing else on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.job_service import JobService, LocalJobs  # noqa: E402
from mnist_core.runs import RunStore  # noqa: E402
from tests.ray_cluster import head_node, worker_node  # noqa: E402

GRID = [(rate, dropout) for rate in (0.001, 0.003) for dropout in (0.2, 0.4)]


def wait_for_runs(service: JobService, job_ids: list[str], watch: bool = False) -> float:
    """Tick until every job has ended with its run in the store; the peak RSS (MB) of Ray
    trainer processes on this machine meanwhile when `watch`."""
    peak = 0.0
    while True:
        service.tick()
        statuses = [s for s in service.jobs() if s.job_id in job_ids]
        failed = [s.current.error for s in statuses if s.state == "failed"]
        if failed:
            raise RuntimeError(failed[0])
        if all(s.current.run_id and not s.active for s in statuses):
            return peak
        if watch:
            peak = max(peak, trainer_rss_mb())
        time.sleep(0.25)  # as often as a page polls: the benchmark takes little of the CPUs


def trainer_rss_mb() -> float:
    total = 0.0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        if any("ray::Trainer" in part for part in process.info["cmdline"] or []):
            total = max(total, process.info["memory_info"].rss / 2**20)
    return total


def timed_training(service: JobService, config: TrainConfig, owner: str) -> float:
    started = time.perf_counter()
    job_id = service.submit(config, owner=owner)
    wait_for_runs(service, [job_id])
    return time.perf_counter() - started


def overhead(folder: Path) -> tuple[float, float]:
    """Seconds from submit to run for a 1-epoch mlp: local workers, then Ray (2-CPU head)."""
    import ray

    from mnist_core.ray_jobs import RayJobs

    config = TrainConfig.preset("mlp", epochs=1)
    local = timed_training(LocalJobs(folder / "local", workers=1), config, "bench")
    with head_node(folder) as address:
        service = RayJobs(folder / "ray", address)
        timed_training(service, config, "warm-up")  # MNIST into the object store, once
        on_ray = timed_training(service, config, "bench")
        ray.shutdown()
    return local, on_ray


def sweep_on_two_nodes(folder: Path, epochs: int | None) -> tuple[float, float]:
    """Seconds for the 4-trial sweep two at a time, then for its trials one after another."""
    import ray

    from mnist_core.ray_jobs import RayJobs

    base = TrainConfig.preset("mlp", **({"epochs": epochs} if epochs else {}))
    configs = [base.replace(learning_rate=rate, dropout_rate=drop) for rate, drop in GRID]
    environ = {**os.environ, "MNIST_RAY_CPUS_PER_JOB": "1"}
    with head_node(folder, cpus=1) as address, worker_node(folder, address, cpus=1):
        service = RayJobs(folder / "sweep", address, environ=environ)
        while sum(1 for node in ray.nodes() if node["Alive"]) < 2:
            time.sleep(0.2)
        timed_training(service, base.replace(epochs=1), "warm-up")
        started = time.perf_counter()
        sweep_id = service.submit_sweep(configs, owner="bench")
        wait_for_runs(service, [trial.job_id for trial in service.sweep(sweep_id)])
        parallel = time.perf_counter() - started
        started = time.perf_counter()
        for config in configs:
            timed_training(service, config, "bench")
        sequential = time.perf_counter() - started
        ray.shutdown()
    return parallel, sequential


def per_preset(folder: Path, presets: list[str]) -> list[tuple[str, float, float]]:
    """(preset, seconds per epoch, peak trainer RSS in MB) for one epoch of each preset."""
    import ray

    from mnist_core.ray_jobs import RayJobs

    rows = []
    with head_node(folder) as address:
        service = RayJobs(folder / "presets", address)
        for preset in presets:
            job_id = service.submit(TrainConfig.preset(preset, epochs=1), owner=preset)
            peak = wait_for_runs(service, [job_id], watch=True)
            run = RunStore(folder / "presets").get(service.status(job_id).current.run_id)
            rows.append((preset, run.metrics.train_seconds, peak))
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, help="epochs of each sweep trial (default: the mlp preset's 20)"
    )
    parser.add_argument("--presets", default="mlp,cnn,deep")
    parser.add_argument("--skip", default="", help="parts to leave out: overhead,sweep,presets")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for part in ("overhead", "sweep", "presets"):
            (folder / part).mkdir()
        if "overhead" not in skip:
            local, on_ray = overhead(folder / "overhead")
            print(
                f"1-epoch mlp, submit to run: local workers {local:.2f} s, Ray {on_ray:.2f} s; "
                f"Ray path overhead {on_ray - local:+.2f} s (target <= 5 s: "
                f"{'ok' if on_ray - local <= 5 else 'MISSED'})",
                flush=True,
            )
        if "sweep" not in skip:
            parallel, sequential = sweep_on_two_nodes(folder / "sweep", args.epochs)
            ratio = parallel / sequential
            print(
                f"4-trial mlp sweep ({args.epochs or 'the preset'} epochs each) on two 1-CPU "
                "nodes: "
                f"{parallel:.1f} s, one after another {sequential:.1f} s, ratio {ratio:.2f} "
                f"(target <= 0.6: {'ok' if ratio <= 0.6 else 'MISSED'})",
                flush=True,
            )
        if "presets" not in skip:
            for preset, seconds, peak in per_preset(folder / "presets", args.presets.split(",")):
                print(
                    f"{preset}: {seconds:.1f} s per epoch on 2 CPUs, trainer peak RSS "
                    f"{peak:.0f} MB",
                    flush=True,
                )


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
