"""Which keys of the `crossover` section each crossover operator reads: the one declaration of it.

The operators themselves are `recomb.recombination.crossover`; this table sits in the lowest layer so that
the search grid, the leaderboards, the reports and the plots read it too, instead of each re-encoding that
`layer` reads no knob and only `random` reads the seed. A knob an operator does not read cannot change its
child, so a recipe, a leaderboard row or a label shows only the knobs its operator reads.
"""

READS: dict[str, tuple[str, ...]] = {
    "random": ("alpha", "seed"),
    "layer": (),
    "weighted": ("alpha", "repair"),
    "aligned": ("alpha", "matching", "align_max_passes", "repair"),
    "slerp": ("alpha", "repair"),
}

# The knobs a search recipe sets (the rest, `align_max_passes`, come from the `crossover` section).
RECIPE_KNOBS = ("alpha", "seed", "matching", "repair")


def recipe_knobs(mode: str) -> tuple[str, ...]:
    """The recipe knobs `mode` reads, in `RECIPE_KNOBS` order."""
    return tuple(key for key in RECIPE_KNOBS if key in READS[mode])


def recipe_text(knobs: dict) -> str:
    """`layer`, `weighted α=0.7`, `random α=0.5 seed=1`, `aligned α=0.5 activations repair`: the mode and the
    knobs it reads (a matching by weights and no repair, the operators' plain forms, go unsaid)."""
    words = [knobs["mode"]]
    for key in recipe_knobs(knobs["mode"]):
        value = knobs.get(key)
        if key == "alpha":
            words.append(f"α={value:g}")
        elif key == "seed":
            words.append(f"seed={value}")
        elif key == "matching" and value == "activations":
            words.append("activations")
        elif key == "repair" and value:
            words.append("repair")
    return " ".join(words)
