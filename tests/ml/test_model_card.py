"""Model-card rendering: the evaluation table and the cross-validation section."""
from ml.model_card import cross_validation_section, render_model_card, with_section

_FOLD = {"dice_mean": 0.99, "sensitivity_mean": 0.98, "fdr_mean": 0.01, "count_error_pct_mean": 1.5,
         "dice_per_fold": [0.99, 0.991]}
_SUMMARY = {"folds": 2, "folds_done": 2, "steps_per_fold": 2000,
            "scores": {"confocal": {"n_images": 80, "n_folds": 2, "network": _FOLD,
                                    "LoG baseline": dict(_FOLD, dice_mean=0.7)}}}


def test_card_lists_holdout_protocol_and_scores():
    meta = {"model_version": "cones-abc", "widths": [16, 32], "kind": "cells", "n_parameters": 10,
            "peak_threshold": 0.3, "train_config": {"batch_size": 12, "augment": {"patch_px": 96}},
            "train_subjects": ["A", "B"], "train_seconds": 60.0}
    results = {"holdout": {"confocal": ["C"]}, "protocol": "match first",
               "scores": {"confocal": {"network": {"dice_mean": 0.99}}}}
    card = render_model_card("cones", meta, results)
    assert "cones-abc" in card and '"confocal": ["C"]' in card and "Protocol: match first" in card
    assert "| confocal | network | dice_mean=0.99 |" in card


def test_cross_validation_section_is_replaced_not_repeated():
    section = cross_validation_section(_SUMMARY)
    assert "| confocal (80 images) | network | 0.9900 |" in section and "0.990, 0.991" in section
    card = "# card\n\n## Evaluation\nfigures\n\n## Limitations\nsome\n"
    once = with_section(card, section)
    assert once.count("## Cross-validation by subject") == 1 and once.startswith(card.rstrip("\n"))
    newer = cross_validation_section(dict(_SUMMARY, steps_per_fold=4000))
    again = with_section(with_section(once, newer), newer)
    assert again.count("## Cross-validation by subject") == 1 and "(4000 steps)" in again
    inside = with_section("# c\n\n## Cross-validation by subject\nstale text\n\n## Limitations\nkeep\n", section)
    assert "stale text" not in inside and inside.rstrip().endswith("## Limitations\nkeep")
