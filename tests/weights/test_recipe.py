"""The bundled weights' recipe (scripts/train_bundled_weights.sh): the clips it holds out for evaluation
are in none of its training sets, so the model card's held-out figures are about unseen clips."""
from __future__ import annotations

import re
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "scripts" / "train_bundled_weights.sh"


def clip_lists(text: str) -> dict[str, set[str]]:
    """NAME=(...) bash arrays of the recipe -> their clip file names (any ":delay" suffix dropped)."""
    lists = {}
    for name, body in re.findall(r"^([A-Z_]+)=\((.*?)\)", text, flags=re.S | re.M):
        items = re.findall(r"[\w.-]+\.(?:mp4|mov)", body)
        lists[name] = set(items)
    return lists


def test_held_out_clips_train_nothing():
    lists = clip_lists(RECIPE.read_text())
    assert {"HELDOUT", "SPEAKER_CLIPS", "RENDERER_CLIPS", "LIP_CLIPS"} <= set(lists)
    held_out = lists["HELDOUT"]
    assert len(held_out) == 7 and "vox2_man_tinted_glasses_741400163_pcavs.mp4" in held_out
    for name in ("SPEAKER_CLIPS", "RENDERER_CLIPS", "LIP_CLIPS"):
        assert lists[name], name
        assert not held_out & lists[name], (name, held_out & lists[name])
    # the speaker set is part of both other training sets (the recipe's own statement)
    assert lists["SPEAKER_CLIPS"] <= lists["RENDERER_CLIPS"] and lists["SPEAKER_CLIPS"] <= lists["LIP_CLIPS"]
