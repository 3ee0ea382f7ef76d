"""Run independent jobs in worker processes, or as Ray tasks on a cluster.

Each worker uses one torch thread: these networks are tiny, and two processes
with one thread each beat one process with two threads by a wide margin.
"""

from __future__ import annotations

import importlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

from .errors import RecombError

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, str, int, int], None]
"""`progress(slot, label, done, total)`: job `slot` has done `done` of `total` units. Called inside the
worker that runs the job (so it must pickle); the stages draw one bar per slot, the library never prints."""

RAY_MISSING = "{}.backend is ray but Ray is not installed: pip install 'recomb[ray]' (or: pip install ray)"


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def map_processes(fn: Callable[[T], R], jobs: Sequence[T], workers: int, threads: int = 1,
                  start_method: str = "spawn", preload: Sequence[str] = ()) -> list[R]:
    """`[fn(job) for job in jobs]`, spread over up to `workers` processes, in order.

    `spawn` pays a fresh interpreter (and torch import, ~2 s) per worker; `fork`
    starts in milliseconds from this process, which suits short jobs. `preload`: modules the jobs import
    lazily, imported here first so that forked workers inherit them instead of each importing its own
    (scipy.stats: ~1.5 s a process on a 2-core Zen 3), and this process has them for what comes after.
    """
    for module in preload:
        importlib.import_module(module)
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    ctx = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        return list(pool.map(fn, jobs))


def import_ray(section: str):
    """Ray, or a one-line error naming `section`.backend and saying how to install it (an optional extra)."""
    try:
        import ray
    except ImportError:
        raise RecombError(RAY_MISSING.format(section)) from None
    return ray


def map_ray(fn: Callable[[T], R], jobs: Sequence[T], address: str, section: str, threads: int = 1) -> list[R]:
    """`[fn(job) for job in jobs]` as Ray tasks on the cluster at `address` ('': a private local Ray), in order;
    `section` is the params section whose `ray_address` a connection error names.

    '' starts a new local Ray (`address="local"`): `ray.init(address=None)` would attach to whatever cluster
    RAY_ADDRESS or this machine's last Ray session names, a stranger's or a dead one.

    Workers import `fn` by its module path, so recomb must be installed on every node.
    """
    ray = import_ray(section)
    if not ray.is_initialized():
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise RecombError(f"{section}.ray_address: cannot connect to Ray at {address!r} ({exc})") from None

    def run(job: T) -> R:
        torch.set_num_threads(threads)
        return fn(job)

    remote = ray.remote(num_cpus=1)(run)
    return ray.get([remote.remote(job) for job in jobs])
