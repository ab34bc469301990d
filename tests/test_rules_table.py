"""The evaluator's rule tables refuse bad values by name ([page_rules], [warning_rules])."""
from __future__ import annotations

import pytest

from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.warning_rules import WarningRulesConfig


@pytest.mark.parametrize(("cls", "table", "raw", "message"), [
    (PageRulesConfig, "page_rules", {"severe_factr": 3.0}, "page_rules: unknown key 'severe_factr'; known: "),
    (PageRulesConfig, "page_rules", {"burn_rate": "yes"}, "page_rules.burn_rate: must be true or false"),
    (PageRulesConfig, "page_rules", {"severe_min_samples": 2.5}, "page_rules.severe_min_samples: must be an integer >= 1"),
    (PageRulesConfig, "page_rules", {"severe_window_s": float("nan")}, "page_rules.severe_window_s: must be a finite number >= 0"),
    (WarningRulesConfig, "warning_rules", {"confirm_s": -1}, "warning_rules.confirm_s: must be a finite number >= 0"),
    (WarningRulesConfig, "warning_rules", {"enabled": 1}, "warning_rules.enabled: must be true or false"),
    (WarningRulesConfig, "warning_rules", ["confirm_s"], "warning_rules: must be a table, got list"),
])
def test_a_bad_value_is_refused_naming_its_table_and_key(cls, table, raw, message):
    with pytest.raises(ValueError) as err:
        cls.from_mapping(raw)
    assert message in str(err.value)


def test_good_values_are_kept_as_floats_and_a_list_of_slas_as_a_tuple():
    pages = PageRulesConfig.from_mapping({"severe_window_s": 30, "excluded_slas": ["gpu_utilization_percent"]})
    assert pages.severe_window_s == 30.0 and isinstance(pages.severe_window_s, float)
    assert pages.excluded_slas == ("gpu_utilization_percent",)
    assert WarningRulesConfig.from_mapping({"confirm_s": 30}).confirm_s == 30.0
