"""ICD-10-CM codes as benchmark labels: spelling, hierarchy, levels and descriptions.

The tree itself comes from the PyPI package ``simple_icd_10_cm`` (the full ICD-10-CM release,
offline), never from hand-written tables. This module only fixes the conventions the benchmark
needs on top of it:

- **Codes are written without dots** (``I481``), as MIMIC-IV and MIMIC-IV-ECG-Ext-ICD write
  them; the package writes them with dots (``I48.1``). :func:`to_dotless` / :func:`to_dotted`
  convert.
- **Chapters and blocks are named as in the LAMAE paper's tables**: a chapter by its Roman
  numeral (``IX``; the package calls it ``"9"``) and a block by chapter numeral + block range
  (``IX.I30-I5A``). The prefix also keeps a block apart from a category that has the same name
  (ICD-10-CM has single-category blocks such as ``B99``).
- **Levels** are those the paper reports: chapter, block, category (3 characters),
  subcategory (4 characters). Longer codes (5–7 characters, which the paper's 4-character
  truncation removes) are called ``subclassification``, WHO ICD-10's word for the 5th character.
"""

from __future__ import annotations

from functools import cache, lru_cache
from types import ModuleType

ROMAN_CHAPTERS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "IV",
    "V",
    "VI",
    "VII",
    "VIII",
    "IX",
    "X",
    "XI",
    "XII",
    "XIII",
    "XIV",
    "XV",
    "XVI",
    "XVII",
    "XVIII",
    "XIX",
    "XX",
    "XXI",
    "XXII",
)
ICD_LEVELS: tuple[str, ...] = ("chapter", "block", "category", "subcategory", "subclassification")


@lru_cache(maxsize=1)
def _icd() -> ModuleType:
    """The package, imported on first use: its import parses the whole ICD-10-CM release (~2 s),
    which plugin discovery (``benchmark list``) should not pay."""
    import simple_icd_10_cm

    return simple_icd_10_cm


def _require_code(code: str) -> None:
    if not is_valid_code(code):
        raise ValueError(f"{code!r} is not an ICD-10-CM code (category or finer), e.g. 'I481' or 'I48.1'")


def to_dotted(code: str) -> str:
    """``I481`` -> ``I48.1`` (the package's spelling). Dotted input is returned unchanged."""
    _require_code(code)
    return _icd().add_dot(code)


def to_dotless(code: str) -> str:
    """``I48.1`` -> ``I481`` (MIMIC's spelling, used for all benchmark labels)."""
    _require_code(code)
    return _icd().remove_dot(code)


def is_valid_code(code: str) -> bool:
    """True for an ICD-10-CM category or finer code, dotted or not; False for chapters/blocks.

    ``B99`` is both a block and a category in ICD-10-CM; as a code it means the category.
    """
    return _icd().is_valid_item(code) and _icd().is_category_or_subcategory(code)


def _chapter_name(package_chapter: str) -> str:
    return ROMAN_CHAPTERS[int(package_chapter) - 1]


@cache
def icd_label_names(code: str) -> tuple[str, ...]:
    """The code and its ancestors as label names, most specific first.

    ``icd_label_names('I481') == ('I481', 'I48', 'IX.I30-I5A', 'IX')``. The package lists
    ancestors nearest first and ends with block, chapter (ICD-10-CM has no nested blocks).
    """
    _require_code(code)
    *codes, block, chapter = _icd().get_ancestors(to_dotted(code))
    chapter_name = _chapter_name(chapter)
    return (to_dotless(code), *(_icd().remove_dot(c) for c in codes), f"{chapter_name}.{block}", chapter_name)


def _parse(label_name: str) -> tuple[str, str]:
    """(level, the package's spelling) of a label name; ValueError if it names nothing."""
    if label_name in ROMAN_CHAPTERS:
        return "chapter", str(ROMAN_CHAPTERS.index(label_name) + 1)
    chapter_name, dot, block = label_name.partition(".")
    if dot and chapter_name in ROMAN_CHAPTERS:
        if not _icd().is_block(block) or _icd().get_parent(block, prioritize_blocks=True) != _parse(chapter_name)[1]:
            raise ValueError(f"{label_name!r}: {block!r} is not a block of ICD-10-CM chapter {chapter_name}")
        return "block", block
    _require_code(label_name)
    length = len(_icd().remove_dot(label_name))
    level = "category" if length == 3 else "subcategory" if length == 4 else "subclassification"
    return level, to_dotted(label_name)


def icd_level(label_name: str) -> str:
    """One of :data:`ICD_LEVELS`: ``IX`` chapter, ``IX.I30-I5A`` block, ``I48`` category, ``I481`` subcategory."""
    return _parse(label_name)[0]


def icd_description(label_name: str) -> str:
    """The ICD-10-CM description, e.g. ``IX`` -> 'Diseases of the circulatory system (I00-I99)'."""
    level, code = _parse(label_name)
    return _icd().get_description(code, prioritize_blocks=level in ("chapter", "block"))


def icd_parent(label_name: str) -> str | None:
    """The parent label name (``I481`` -> ``I48`` -> ``IX.I30-I5A`` -> ``IX`` -> None)."""
    level, code = _parse(label_name)
    if level == "chapter":
        return None
    if level == "block":
        return label_name.partition(".")[0]
    return icd_label_names(label_name)[1]


def icd_hierarchy(codes: list[str] | tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """Close ``codes`` under ancestors: (label names in tree order, parent map for ECGArrays).

    ``icd_hierarchy(['I481']) == (['IX', 'IX.I30-I5A', 'I48', 'I481'], {...})``; see :func:`icd_tree`.
    """
    return icd_tree({name for code in codes for name in icd_label_names(code)})


def icd_tree(label_names: list[str] | tuple[str, ...] | set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Label names of any level in tree order, with their parent map.

    Tree order is depth-first (chapter, its blocks, their categories, ...) with chapters in
    numeric order, the order of the paper's tables. The parent map gives each label its
    parent as a one-element list, chapters an empty list (``ECGArrays.label_parents``).
    """

    def path_from_root(name: str) -> tuple:
        path = []
        node: str | None = name
        while node is not None:
            path.append(node)
            node = icd_parent(node)
        chapter, *rest = reversed(path)
        return (ROMAN_CHAPTERS.index(chapter), *rest)

    ordered = sorted(set(label_names), key=path_from_root)
    parents = {name: [p] if (p := icd_parent(name)) is not None else [] for name in ordered}
    return ordered, parents
