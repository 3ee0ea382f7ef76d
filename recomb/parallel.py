"""Run independent jobs (e.g. the two parents' DQN runs) in worker processes.

Each worker uses one torch thread: these networks are tiny, and two processes
with one thread each beat one process with two threads by a wide margin.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def map_processes(fn: Callable[[T], R], jobs: Sequence[T], workers: int, threads: int = 1) -> list[R]:
    """`[fn(job) for job in jobs]`, spread over up to `workers` spawned processes, in order."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        return list(pool.map(fn, jobs))
