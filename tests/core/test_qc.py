"""QC flags: one test per check, thresholds configurable and validated."""
from __future__ import annotations

import pytest

from aooct_core.qc import QCFlag, QCThresholds, qc_checks, qc_flags


def only(flags):
    assert len(flags) == 1, flags
    return flags[0]


@pytest.mark.parametrize(
    ("kwargs", "name", "severity"),
    [
        ({"snr_db": 12.0}, "low_snr", "warn"),
        ({"snr_db": 5.0}, "low_snr", "fail"),
        ({"residual_motion_um": 2.0}, "residual_motion", "warn"),
        ({"residual_motion_um": 4.0}, "residual_motion", "fail"),
        ({"uncertainty_fraction": 0.3}, "high_uncertainty", "warn"),
        ({"uncertainty_fraction": 0.6}, "high_uncertainty", "fail"),
        ({"cell_count": 50}, "too_few_cells", "warn"),
        ({"cell_count": 10}, "too_few_cells", "fail"),
        ({"density_cells_per_mm2": 45000.0, "eccentricity_deg": 2.0}, "implausible_density", "warn"),
        ({"density_cells_per_mm2": 80000.0, "eccentricity_deg": 2.0}, "implausible_density", "fail"),
        ({"registration_ok": False}, "registration_failure", "fail"),
        ({"vessel_fragment_count": 20}, "fragmented_vessels", "warn"),
        ({"vessel_fragment_count": 100}, "fragmented_vessels", "fail"),
        ({"cone_spacing_px": 2.4}, "undersampled_mosaic", "warn"),
        ({"cone_spacing_px": 2.0}, "undersampled_mosaic", "fail"),
        ({"padded_fraction": 0.15}, "padded_columns", "warn"),
        ({"padded_fraction": 0.4}, "padded_columns", "fail"),
    ],
)
def test_each_check_raises_its_flag(kwargs, name, severity):
    flag = only(qc_flags(**kwargs))
    assert isinstance(flag, QCFlag)
    assert (flag.name, flag.severity) == (name, severity)
    assert flag.message and flag.threshold is not None


def test_good_case_has_no_flags_and_all_checks_pass():
    kwargs = dict(snr_db=30.0, residual_motion_um=0.5, uncertainty_fraction=0.05, cell_count=2500,
                  density_cells_per_mm2=29000.0, eccentricity_deg=2.0, registration_ok=True,
                  vessel_fragment_count=2, cone_spacing_px=5.6)
    assert qc_flags(**kwargs) == []
    checks = qc_checks(**kwargs)
    assert len(checks) == 8 and all(c.passed for c in checks)


def test_nothing_given_nothing_checked_and_no_norm_far_out():
    assert qc_flags() == []
    assert qc_checks(density_cells_per_mm2=1000.0, eccentricity_deg=60.0) == []


def test_thresholds_are_configurable():
    strict = QCThresholds(snr_warn_db=35.0, snr_fail_db=25.0)
    assert only(qc_flags(snr_db=30.0, thresholds=strict)).severity == "warn"
    assert qc_flags(snr_db=30.0) == []


def test_bad_thresholds_and_inputs_raise():
    with pytest.raises(ValueError, match="snr_fail_db must be ≤ snr_warn_db"):
        QCThresholds(snr_warn_db=5.0, snr_fail_db=10.0)
    with pytest.raises(ValueError, match="finite"):
        QCThresholds(cell_count_warn=-1)
    with pytest.raises(ValueError, match="snr_db"):
        qc_flags(snr_db=float("nan"))
    with pytest.raises(ValueError, match="uncertainty_fraction"):
        qc_flags(uncertainty_fraction=1.5)
    with pytest.raises(ValueError, match="padded_fraction"):
        qc_flags(padded_fraction=1.5)
    with pytest.raises(ValueError, match="padded_warn_fraction must be ≤ padded_fail_fraction"):
        QCThresholds(padded_warn_fraction=0.5, padded_fail_fraction=0.3)


def test_padded_columns_says_why():
    flag = only(qc_flags(padded_fraction=0.35))
    assert "repeated border columns" in flag.message and flag.threshold == 0.30
    assert qc_flags(padded_fraction=0.05) == []


def test_flag_serialises():
    d = only(qc_flags(cell_count=5)).to_dict()
    assert set(d) == {"name", "severity", "value", "threshold", "message"}


def test_unattributed_saccade_warns_above_the_residual_motion_fail_limit():
    from aooct_core.qc import qc_checks, qc_flags

    assert qc_flags(saccade_ambiguity_um=0.0) == []
    assert qc_flags(saccade_ambiguity_um=2.9) == []
    flag, = qc_flags(saccade_ambiguity_um=4.5)
    assert flag.name == "unattributed_saccade" and flag.severity == "warn" and flag.threshold == 3.0
    check, = qc_checks(saccade_ambiguity_um=1.0)
    assert check.passed and check.name == "unattributed_saccade"


def test_a_lower_bound_snr_passes_or_warns_but_never_fails():
    # No vitreous in view: the SNR is only bounded from below (issue 16), so a low bound
    # says "could not be measured" (warn) and a high one is conclusive (pass).
    from aooct_core.qc import qc_checks

    (low,) = qc_checks(snr_db=3.0, snr_is_lower_bound=True)
    assert not low.passed and low.severity == "warn" and "could not be measured" in low.message
    (high,) = qc_checks(snr_db=21.0, snr_is_lower_bound=True)
    assert high.passed and "at least 21" in high.message
    (exact,) = qc_checks(snr_db=3.0)
    assert exact.severity == "fail"
