"""Artifact locations shared by the stages and declared in dvc.yaml."""

PIPELINE = "dvc.yaml"  # the stages' deps, params and outputs, read by the ablation (DVC refuses it as a dep: a
# change of what a stage reads or writes comes with that stage's code, which is one)
IMPORTED = "data/inputs/imported.json"
IMPORTED_PARENTS = "data/inputs/parent_{}.safetensors"
IMPORTED_STATES = "data/inputs/states.npy"
IMPORTED_SHIFTED = "data/inputs/shifted_states.npy"  # generalize.shifted_states, imported
PARENTS = "data/parents/parent_{}.safetensors"
PARAMS_CHECKED = "data/params_checked.txt"  # stage `params`: constant text; every other stage depends on it
STATES_TRAIN = "data/states/train.npy"
STATES_HELDOUT = "data/states/heldout.npy"
STATES_CONDITION = "data/states/{}_condition.npy"  # train | heldout: the condition each state was visited in
STATES_CONDITIONS = "data/states/conditions.json"  # those conditions, and each parent's return in each
PARENT_CURVES = "data/plots/parents/parent_{}.csv"
PARENT_PNG = "data/plots/parents/training.png"
BASELINE = "data/baseline/dqn.safetensors"  # the compute-matched DQN a child must beat (stage `baseline`)
BASELINE_CURVE = "data/plots/baseline/dqn.csv"
BASELINE_SKIPPED = "data/baseline/not_trained.json"  # instead, for parents that were not trained (why)
STUDENTS = "data/students/student_{}.safetensors"
DISTILL_CURVES = "data/plots/distill/student_{}.csv"
DISTILL_PNG = "data/plots/distill/learning_curves.png"
DISTILL_REPORT = "data/reports/distillation.json"
DISTILL_MARKDOWN = "data/reports/distillation.md"
PAIRS = ("A", "B")
PTQ_INT8 = "data/quantized/student_{}_int8.safetensors"
QAT_FLOAT = "data/qat/student_{}_qat.safetensors"
QAT_INT8 = "data/qat/student_{}_qat_int8.safetensors"
QAT_CURVES = "data/plots/qat/student_{}.csv"
QAT_PNG = "data/plots/qat/learning_curves.png"
QUANT_REPORT = "data/reports/quantized.json"
QUANT_MARKDOWN = "data/reports/quantized.md"
TIMING_REPORT = "data/reports/latest/timing.json"
TIMING_MARKDOWN = "data/reports/latest/timing.md"
MACHINE_REPORT = "data/reports/latest/machine.json"  # this machine's fingerprint (`recomb timing`, `recomb machine`)
LOCK_MACHINE = "data/reports/lock_machine.json"  # the fingerprint of the machine that made the committed dvc.lock
CROSSOVER_INPUTS = {"parents": PARENTS, "students": STUDENTS, "quantized": PTQ_INT8, "qat": QAT_INT8}
CHILD_RAW = "data/children/raw/child.safetensors"
CHILD = "data/children/finetuned/child.safetensors"
CHILD_INT8 = "data/children/finetuned/child_int8.safetensors"
FINETUNE_CURVES = "data/plots/finetune/child.csv"
FINETUNE_PNG = "data/plots/finetune/learning_curves.png"
RECOMB_REPORT = "data/reports/recombination.json"
RECOMB_MARKDOWN = "data/reports/recombination.md"
EXPORT_DIR = "data/export"  # `recomb export`: the child as ONNX and a torch state dict (a command's, not a DVC output)
SEARCH_CHILD = "data/search/{}/child.safetensors"
SEARCH_CHILD_INT8 = "data/search/{}/child_int8.safetensors"
SEARCH_RUN_CONFIG = "data/search/{}/run_config.json"
SEARCH_REPORTS = "data/reports/search"
SEARCH_LEADERBOARD = "data/search/leaderboard.json"  # the ranked rows other stages read (names: not a metric)
SEARCH_PNG = "data/plots/search/children.png"
MULTIGEN_LINEAGE = "data/multigen/lineage.json"
MULTIGEN_BEST = "data/multigen/best_gen{}.safetensors"
MULTIGEN_SUMMARY = "data/reports/multigen/summary.json"
MULTIGEN_MARKDOWN = "data/reports/multigen/summary.md"
MULTIGEN_PNG = "data/plots/multigen/best_per_generation.png"
PIPELINE_REPORT = "data/reports/pipeline.json"
PIPELINE_MARKDOWN = "data/reports/pipeline.md"
HEADLINE = "data/reports/headline.json"


def int8_students(qat_converted: bool) -> dict[str, str]:
    """The int8 students a run has, by method: PTQ always, QAT when `qat.convert`."""
    return {"ptq": PTQ_INT8, **({"qat": QAT_INT8} if qat_converted else {})}

# Analyses (issue 12): generalization and shift, the child's errors, objectives and operators compared.
GENERALIZE_SUMMARY = "data/reports/generalization/generalization_summary.json"
GENERALIZE_MARKDOWN = "data/reports/generalization/report.md"
GENERALIZE_CURVES = "data/plots/generalization/returns.csv"
GENERALIZE_PNG = "data/plots/generalization/robustness.png"
SKILLS_PNG = "data/plots/generalization/skills.png"
ANALYSIS_DIR = "data/analysis"
ANALYSIS_DISAGREEMENTS_CSV = "data/analysis/disagreements.csv"
ANALYSIS_DISAGREEMENTS_JSON = "data/analysis/disagreements.json"
ANALYSIS_WORST = "data/analysis/worst_{}_states.json"
ANALYSIS_ACTIVATIONS = "data/analysis/activations_{}.npy"
ANALYSIS_SUMMARY = "data/reports/analysis/summary.json"
ANALYSIS_MARKDOWN = "data/reports/analysis/report.md"
ANALYSIS_STATE_PNG = "data/plots/analysis/state_space.png"
ANALYSIS_MARGIN_PNG = "data/plots/analysis/margin.png"
OBJECTIVES_SUMMARY = "data/reports/objectives/summary.json"
OBJECTIVES_MARKDOWN = "data/reports/objectives/report.md"
OBJECTIVES_CURVES = "data/plots/objectives/{}.csv"
OBJECTIVES_PNG = "data/plots/objectives/learning_curves.png"
OPERATORS_SUMMARY = "data/reports/operators/summary.json"
OPERATORS_MARKDOWN = "data/reports/operators/report.md"
OPERATORS_PNG = "data/plots/operators/operators.png"

# The ablation (issue 13): its own pipeline file, ablation/dvc.yaml.
ABLATION_DIR = "data/ablation"  # <condition>/seed_<s>/: each run's checkpoints and reports
ABLATION_SUMMARY = {"rows": "data/reports/ablation/ablation_summary.csv",  # one row per (condition, seed)
                    "aggregates": "data/reports/ablation/ablation_aggregates.csv",  # per condition and figure
                    "markdown": "data/reports/ablation/ablation_summary.md",
                    "metrics": "data/reports/ablation/summary.json",
                    "figure": "data/plots/ablation/seeds.png"}
ABLATION_TIMING = "data/reports/latest/ablation_timing.md"  # wall-clock: never hashed
ABLATION_PLAN = "data/reports/latest/ablation_plan"  # `recomb ablation --dry-run` (a command's, not a DVC output)
ABLATION_FROM_EXPS = {kind: f"data/reports/latest/ablation_exps/{path.rsplit('/', 1)[1]}"  # `recomb ablation
                      for kind, path in ABLATION_SUMMARY.items()}                       # --from-exps`: the same
CONNECTIVITY_SUMMARY = "data/reports/connectivity/summary.json"
CONNECTIVITY_MARKDOWN = "data/reports/connectivity/report.md"
CONNECTIVITY_PNG = "data/plots/connectivity/barrier.png"
