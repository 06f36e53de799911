"""ICD-10-CM helper: spelling, ancestors in the LAMAE paper's naming, levels, descriptions."""

from __future__ import annotations

import pytest

from benchmark.data.icd import (
    ICD_LEVELS,
    icd_description,
    icd_hierarchy,
    icd_label_names,
    icd_level,
    icd_parent,
    is_valid_code,
    to_dotless,
    to_dotted,
)


def test_ancestors_in_paper_naming():
    assert icd_label_names("I481") == ("I481", "I48", "IX.I30-I5A", "IX")
    assert icd_label_names("I48.1") == icd_label_names("I481")
    assert icd_label_names("I48") == ("I48", "IX.I30-I5A", "IX")
    assert icd_label_names("I2510") == ("I2510", "I251", "I25", "IX.I20-I25", "IX")
    assert icd_label_names("I10") == ("I10", "IX.I10-I1A", "IX")
    assert icd_label_names("S52531A")[-2:] == ("XIX.S50-S59", "XIX")


def test_levels():
    expected = {
        "IX": "chapter",
        "IX.I30-I5A": "block",
        "I48": "category",
        "I481": "subcategory",
        "I4510": "subclassification",
        "S52531A": "subclassification",
    }
    assert {name: icd_level(name) for name in expected} == expected
    assert set(expected.values()) <= set(ICD_LEVELS)


def test_single_category_block_is_not_confused_with_its_category():
    assert icd_label_names("B998") == ("B998", "B99", "I.B99", "I")
    assert icd_level("I.B99") == "block" and icd_level("B99") == "category"
    assert icd_parent("B99") == "I.B99"


@pytest.mark.parametrize(
    "dotless, dotted", [("I481", "I48.1"), ("I4510", "I45.10"), ("I48", "I48"), ("S52531A", "S52.531A"), ("I10", "I10")]
)
def test_dotless_dotted_round_trip(dotless, dotted):
    assert to_dotted(dotless) == dotted
    assert to_dotless(dotted) == dotless
    assert to_dotless(to_dotted(dotless)) == dotless


def test_descriptions():
    assert icd_description("IX") == "Diseases of the circulatory system (I00-I99)"
    assert icd_description("IX.I30-I5A") == "Other forms of heart disease (I30-I5A)"
    assert icd_description("I48") == "Atrial fibrillation and flutter"
    assert icd_description("I481") == "Persistent atrial fibrillation"
    assert icd_description("I440") == "Atrioventricular block, first degree"


def test_parents_walk_up_to_the_chapter():
    chain, name = [], "I4510"
    while name is not None:
        chain.append(name)
        name = icd_parent(name)
    assert chain == ["I4510", "I451", "I45", "IX.I30-I5A", "IX"]


def test_hierarchy_is_closed_ordered_and_has_parent_map():
    names, parents = icd_hierarchy(["I481", "I210", "I10"])
    assert names == ["IX", "IX.I10-I1A", "I10", "IX.I20-I25", "I21", "I210", "IX.I30-I5A", "I48", "I481"]
    assert parents["IX"] == [] and parents["I481"] == ["I48"] and parents["IX.I20-I25"] == ["IX"]
    names, _ = icd_hierarchy(["J189", "I10"])  # chapters in numeric order: IX before X
    assert names.index("IX") < names.index("X")


@pytest.mark.parametrize("bad", ["XYZ", "i481", "I30-I5A", "9", "IX.C00-C14", "X.I30-I5A", ""])
def test_invalid_names_raise(bad):
    with pytest.raises(ValueError):
        icd_level(bad)


def test_is_valid_code_accepts_codes_only():
    assert is_valid_code("I481") and is_valid_code("I48.1") and is_valid_code("B99")
    assert not is_valid_code("I30-I5A") and not is_valid_code("9") and not is_valid_code("I99.99")
    with pytest.raises(ValueError, match="not an ICD-10-CM code"):
        icd_label_names("I30-I5A")
