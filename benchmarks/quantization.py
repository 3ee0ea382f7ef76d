"""Benchmark of the quantization issue's targets; prints the figures, asserts nothing.

    python benchmarks/quantization.py            # all three parts
    python benchmarks/quantization.py cartpole   # default pipeline: ptq (dynamic, static; int8, reference), qat
    python benchmarks/quantization.py synthetic  # the seeds' harness, same runs
    python benchmarks/quantization.py torchao    # CartPole students: our Int8QNetwork vs torchao's quantize_

The pipeline parts run in a scratch copy of the project (its own DVC repo), so they
neither need nor touch `data/`; the ptq variants rerun stages `ptq` and
`validate_quantized` in the same copy. Targets are shown in the column headers;
✓ / ✗ says whether each figure meets its target.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from recomb.artifacts import load_checkpoint, load_states
from recomb.metrics import action_agreement, batch1_latency_ms
from recomb.quantization.quantize import calibration_batches, import_torchao, ptq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scratch import Project  # noqa: E402

from foundation import SYNTHETIC  # noqa: E402  (the seeds' harness, as the foundation benchmark runs it)

HARNESSES = {"cartpole": ("CartPole-v1, default params", {}),
             "synthetic": ("Synthetic 8/4/64, 5000 states, 25 distillation epochs", SYNTHETIC)}
VARIANTS = [("dynamic", "int8"), ("static", "int8"), ("static", "reference"), ("dynamic", "reference")]
PAIRS = "AB"


def mark(value: float, op: str, target: float, fmt: str = ".4f") -> str:
    met = value >= target if op == ">=" else value <= target
    return f"{value:{fmt}} {'✓' if met else '✗'}"


def timed_stage(p: Project, name: str) -> float:
    start = time.perf_counter()
    p.stage(name)
    return time.perf_counter() - start


@functools.cache
def project(workdir: Path, harness: str) -> Project:
    """A scratch project of `harness` with parents and float students."""
    p = Project(workdir / harness)
    p.set(**HARNESSES[harness][1])
    p.stage("parents")
    p.stage("distill")
    return p


def run_variants(p: Project) -> tuple[dict, dict]:
    """Stages ptq and validate_quantized for each VARIANT (qat once, after the first):
    wall seconds per stage run, and the (quality, timing) reports per variant."""
    seconds, runs = {}, {}
    for mode, backend in VARIANTS:
        p.set(**{"ptq.mode": mode, "ptq.backend": backend})
        seconds[mode, backend, "ptq"] = timed_stage(p, "ptq")
        if not runs:
            seconds["qat"] = timed_stage(p, "qat")
        seconds[mode, backend, "validate_quantized"] = timed_stage(p, "validate_quantized")
        p.stage("timing")  # `recomb timing`: this machine's latencies
        runs[mode, backend] = [json.loads((p.path / path).read_text())
                               for path in ("data/reports/quantized.json", "data/reports/latest/timing.json")]
    return seconds, runs


def table(*header: str) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))


def quantized(workdir: Path, harness: str) -> None:
    cartpole = harness == "cartpole"
    seconds, runs = run_variants(project(workdir, harness))
    quality = {f"ptq {mode} {x}": runs[mode, "int8"][0]["students"][f"ptq_{x}"]
               for mode in ("dynamic", "static") for x in PAIRS}
    quality |= {f"qat {x}": runs["dynamic", "int8"][0]["students"][f"qat_{x}"] for x in PAIRS}

    print(f"## {HARNESSES[harness][0]}")
    print(f"stage `qat` (whole process, run once): {seconds['qat']:.1f} s; `recomb timing` peak RSS: "
          f"{max(timing['peak_rss_mib'] for _, timing in runs.values()):.0f} MiB")
    table("ptq.mode / ptq.backend", "stage `ptq` (s)", "stage `validate_quantized` (s)")
    for mode, backend in VARIANTS:
        print(f"| {mode} / {backend} | {seconds[mode, backend, 'ptq']:.1f} "
              f"| {seconds[mode, backend, 'validate_quantized']:.1f} |")

    table("int8 student", "agreement with float student (≥ 0.995)", "advantage relative MSE",
          "teacher agreement float → int8", "greedy return float → int8" + (" (≥ 475)" if cartpole else ""),
          "batch dependence (max abs ΔQ)")
    for name, r in quality.items():
        f, t, g = r["int8_vs_float"], r["teacher_agreement"], r["greedy_return"]
        agreement = mark(f["action_agreement"], ">=", 0.995) if name.startswith("ptq") else f"{f['action_agreement']:.4f}"
        returns = f"{g['float']:.1f} → {mark(g['int8'], '>=', 475.0, '.1f')}" if cartpole else "n/a (no env)"
        print(f"| {name} | {agreement} | {f['advantage_relative_mse']:.4f} | {t['float']:.4f} → {t['int8']:.4f} "
              f"| {returns} | {r['batch_dependence_max_abs']:.1e} |")

    table("int8 student", "tensor bytes float → int8", "tensors ratio (≤ 0.35)", "file ratio (≤ 0.35)",
          "file + sidecar ratio (≤ 0.35)")
    for name, r in quality.items():
        size = r["size_bytes"]
        ratios = " | ".join(mark(size[k]["int8"] / size[k]["float"], "<=", 0.35, ".3f")
                            for k in ("tensors", "file", "file_with_sidecar"))
        print(f"| {name} | {size['tensors']['float']} → {size['tensors']['int8']} | {ratios} |")

    table("int8 student", "backend", "batch-1 median float / int8 (ms)", "latency ratio (≤ 1.0)",
          "batch-1024 states/s float / int8")
    speeds = [(f"ptq {mode} {x}", backend, runs[mode, backend][1]["quantization"][f"ptq_{x}"])
              for mode, backend in VARIANTS for x in PAIRS]
    speeds += [(f"qat {x}", "int8", runs["dynamic", "int8"][1]["quantization"][f"qat_{x}"]) for x in PAIRS]
    for name, backend, s in speeds:
        latency, per_second = s["batch1_latency"], s["throughput_states_per_s_batch1024"]
        print(f"| {name} | {backend} | {latency['float']['median_ms']:.4f} / {latency['int8']['median_ms']:.4f} "
              f"| {mark(s['checks']['latency_ratio']['value'], '<=', 1.0, '.2f')} "
              f"| {per_second['float']:,.0f} / {per_second['int8']:,.0f} |")

    table("pair", "teacher agreement: float", "ptq dynamic int8", "ptq static int8", "qat int8 (≥ both ptq)")
    for x in PAIRS:
        t = {name: quality[f"{name} {x}"]["teacher_agreement"]["int8"] for name in ("ptq dynamic", "ptq static", "qat")}
        print(f"| {x} | {quality[f'qat {x}']['teacher_agreement']['float']:.4f} | {t['ptq dynamic']:.4f} "
              f"| {t['ptq static']:.4f} | {mark(t['qat'], '>=', max(t['ptq dynamic'], t['ptq static']))} |")


def torchao(workdir: Path) -> None:
    import_torchao()  # silences torchao's import noise before the import below
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    p = project(workdir, "cartpole")
    cfg = p.params()["ptq"]
    print("## CartPole students: our int8 path vs torchao `quantize_` (batch-1 latency interleaved, 500 repeats)")
    table("student", "network", "batch-1 median (ms)", "ratio to float", "agreement with float (held-out)")
    for x in PAIRS:
        student = load_checkpoint(p.path / f"data/students/student_{x}.safetensors").model
        dim = student.arch.input_dim
        heldout = torch.from_numpy(load_states(p.path / "data/states/heldout.npy", dim))
        train = torch.from_numpy(load_states(p.path / "data/states/train.npy", dim))
        calibration = calibration_batches(train, cfg["calibration_batches"], cfg["calibration_batch_size"],
                                          cfg["calibration_seed"])
        models = {"float": student, "ours: Int8QNetwork dynamic": ptq(student, "dynamic"),
                  "ours: Int8QNetwork static": ptq(student, "static", calibration)}
        for label, config in (("torchao Int8WeightOnlyConfig", Int8WeightOnlyConfig()),
                              ("torchao Int8DynamicActivationInt8WeightConfig", Int8DynamicActivationInt8WeightConfig())):
            models[label] = copy.deepcopy(student)
            quantize_(models[label], config)
        latency = batch1_latency_ms(models, heldout, repeats=500)
        with torch.inference_mode():
            float_q = student(heldout)
            for label, model in models.items():
                median = latency[label]["median_ms"]
                print(f"| {x} | {label} | {median:.4f} | {median / latency['float']['median_ms']:.2f} "
                      f"| {action_agreement(float_q, model(heldout)):.4f} |")


def main() -> None:
    torch.set_num_threads(1)
    parts = sys.argv[1:] or ["cartpole", "synthetic", "torchao"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for part in parts:
            if part == "torchao":
                torchao(workdir)
            else:
                quantized(workdir, part)
            print()


if __name__ == "__main__":
    main()
