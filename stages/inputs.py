"""Stage `inputs`: the user's files, checked and stored in recomb's format: the files source's parents
and states, and `generalize.shifted_states`.

It is the only stage that reads `data/user/`, and it writes the same import whatever
else `data/user/` holds, so a file dropped there re-runs this one cheap stage and
never the parents or the analyses.
"""

from recomb.artifacts import Outputs, load_states
from recomb.training.parents import ParentsConfig, import_files

from . import paths
from .common import log, run


def main(params: dict) -> None:
    cfg = ParentsConfig.from_params(params, "parents")
    out = Outputs()
    files = {}
    if cfg.source == "files":
        imported = import_files(cfg)
        for pair, ckpt, user_file in zip(paths.PAIRS, imported.parents, (cfg.files.parent_a, cfg.files.parent_b)):
            out.add_checkpoint(paths.IMPORTED_PARENTS.format(pair), ckpt.model, f"parent_{pair}",
                               {"file": user_file, "imported_from": ckpt.meta.get("imported_from", "recomb")})
            files[f"parent_{pair}"] = user_file
        if imported.states is not None:
            out.add_states(paths.IMPORTED_STATES, imported.states)
            files["states"] = cfg.files.states
    shifted = params["generalize"]["shifted_states"]  # checked by the params stage, upstream of every stage
    if shifted:
        out.add_states(paths.IMPORTED_SHIFTED, load_states(shifted, cfg.input_dim))
        files["shifted_states"] = shifted
    if files:
        log.info("imported %s", ", ".join(files.values()))
    out.add_json(paths.IMPORTED, {"source": cfg.source, "files": files})
    out.commit()


if __name__ == "__main__":
    run(main)
