"""Artifact locations shared by the stages and declared in dvc.yaml."""

PARENTS = "data/parents/parent_{}.safetensors"
STATES_TRAIN = "data/states/train.npy"
STATES_HELDOUT = "data/states/heldout.npy"
PARENT_CURVES = "data/plots/parents/parent_{}.csv"
STUDENTS = "data/students/student_{}.safetensors"
DISTILL_CURVES = "data/plots/distill/student_{}.csv"
DISTILL_PNG = "data/plots/distill/learning_curves.png"
DISTILL_REPORT = "data/reports/distillation.json"
DISTILL_TIMING = "data/reports/latest/distillation_timing.json"
DISTILL_MARKDOWN = "data/reports/latest/distillation.md"
PAIRS = ("A", "B")
