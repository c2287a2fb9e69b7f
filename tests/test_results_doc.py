"""docs/results.md documents the stored result schema of odnbench/result.py, and stays in step with it."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from odnbench.result import FAILED_FIELDS, OK_FIELDS, OPTIONAL_OK_FIELDS, SCHEMA_VERSION, Facts, Result, schema_problems

DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text()


def named(text: str) -> set[str]:
    """Everything the page shows as code: `name`, `a.b.c`."""
    return set(re.findall(r"`([^`\n]+)`", text))


def test_every_result_and_facts_field_is_documented(text):
    shown = named(text)
    missing = [f"Result.{f.name}" for f in fields(Result) if f.name != "folder" and f.name not in shown]
    missing += [f"Facts.{f.name}" for f in fields(Facts) if f.name not in shown]
    assert not missing, f"docs/results.md does not describe {', '.join(missing)}"


def test_every_required_field_is_documented(text):
    shown = named(text)
    missing = [path for path, _, _ in OK_FIELDS + FAILED_FIELDS + OPTIONAL_OK_FIELDS if path not in shown]
    assert not missing, f"docs/results.md does not list these fields that verify requires: {', '.join(missing)}"


def test_the_schema_version_is_the_documented_one(text):
    assert f"`SCHEMA_VERSION` = {SCHEMA_VERSION}" in text, \
        f"docs/results.md must state the current schema version (`SCHEMA_VERSION` = {SCHEMA_VERSION})"


def test_the_example_is_a_valid_result(text):
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/results.md should hold one example result.json"
    example = json.loads(blocks[0])
    assert schema_problems(example) == []
    result = Result.from_dict(example)
    assert result.to_dict() == example  # every stored field, nothing the Result does not know
    assert example["schema"] == SCHEMA_VERSION
    cost = example["cost"]
    for total in ("epochs", "sample_steps", "train_seconds", "train_macs"):  # totals = own + each dependency once
        parts = cost["own"][total] + sum(d[total] for d in cost["dependencies"].values())
        assert abs(cost[total] - parts) < 1e-9, total


def test_training_compute_is_optional_but_checked_when_present(text):
    example = json.loads(re.findall(r"```json\n(.*?)```", text, re.S)[0])
    example["cost"]["train_macs"] = None  # a dependency stored before compute was recorded
    del example["cost"]["own"]["train_macs"]
    assert schema_problems(example) == []
    example["cost"]["train_macs"] = -5
    assert any("cost.train_macs" in p and "-5" in p for p in schema_problems(example))
