"""Typosquat rules: Warehouse's transformations are found, legitimate plugin names are not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError
from registry_core.ml._typosquat import TyposquatCheck, normalize_name, typo_variants

POPULAR = [
    "requests", "numpy", "python-dateutil", "sphinx-rtd-theme", "jinja2", "django",
    "urllib3", "pytest", "six", "scikit-learn", "boto3", "pandas",
]  # fmt: skip


@pytest.fixture(scope="module")
def check() -> TyposquatCheck:
    return TyposquatCheck(POPULAR)


@pytest.mark.parametrize(
    ("name", "target", "how"),
    [
        ("reequests", "requests", "repeated-character"),
        ("requsts", "requests", "omitted-character"),
        ("reqeusts", "requests", "swapped-characters"),
        ("dateutil-python", "python-dateutil", "swapped-words"),
        ("sphinx-theme-rtd", "sphinx-rtd-theme", "swapped-words"),
        ("pythondateutil", "python-dateutil", "separator-removed"),
        ("requestz", "requests", "common-typo"),
        ("nurnpy", "numpy", "homoglyph"),
        ("python-requests", "requests", "affix"),
        ("requests-py", "requests", "affix"),
        ("urllib4", "urllib3", "common-typo"),
        ("djang0", "django", "common-typo"),
        ("Jinja_2", "jinja2", "separator-added"),  # normalized to jinja-2
        ("pandas2", "pandas", "version-suffix"),
    ],
)
def test_found(check: TyposquatCheck, name: str, target: str, how: str) -> None:
    found = check.find(name)
    assert [(m.target, m.transformation) for m in found][:1] == [(target, how)]


@pytest.mark.parametrize(
    "name",
    [
        "requests", "Requests", "requests-oauthlib", "requests-toolbelt", "pytest-cov",
        "django-rest-framework", "numpy-financial", "sox", "six", "pandas-stubs",
        "types-requests", "boto3-stubs", "flask",
    ],
)  # fmt: skip
def test_not_found(check: TyposquatCheck, name: str) -> None:
    assert check.find(name) == []


def test_allow_and_arguments() -> None:
    assert TyposquatCheck(["requests"], allow=["reqeusts"]).find("reqeusts") == []
    with pytest.raises(InvalidArgumentError):
        TyposquatCheck([])
    with pytest.raises(InvalidArgumentError):
        TyposquatCheck(["a"], min_length=0)


@settings(max_examples=60)
@given(st.sampled_from(POPULAR), st.data())
def test_every_generated_typo_maps_back(name: str, data: st.DataObject) -> None:
    """typo_variants (the encoder of typos) and find (the decoder) are inverse: each variant
    of a popular name of 4+ characters is flagged with that name as a target."""
    check = TyposquatCheck([name])
    variants = list(typo_variants(name))
    variant, _ = data.draw(st.sampled_from(variants))
    if len(normalize_name(name)) < 4 and len(variant) < 4:
        return
    assert name in {m.target for m in check.find(variant)}
