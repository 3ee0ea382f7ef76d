"""The DVC entry points. `recomb` is imported first, so its dispatch pins are set before torch or numpy loads."""

import recomb  # noqa: F401
