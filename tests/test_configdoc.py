"""docs/config.md is generated from the config models and describes every key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from wis_monitor import rulefile, settings
from wis_monitor.tools.configdoc import DESCRIPTIONS, FILES, _sections, render

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def documented_models() -> set[type[BaseModel]]:
    return {model for _, prefix, root, _ in FILES for _, model in _sections(prefix, root)}


def test_config_md_is_what_the_generator_prints() -> None:
    out = subprocess.run([sys.executable, "-m", "wis_monitor.tools.configdoc"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout == render()
    assert DOC.read_text() == out.stdout, (
        "docs/config.md is stale: python -m wis_monitor.tools.configdoc > docs/config.md")


def test_every_field_of_every_config_model_is_described_and_documented() -> None:
    models = {m for module in (settings, rulefile) for m in vars(module).values()
              if isinstance(m, type) and issubclass(m, BaseModel)
              and m not in (BaseModel, settings.Model, rulefile.Model)}
    # Every model of the settings and the rule files is documented but the shells of the
    # files themselves.
    assert models - documented_models() == {rulefile.RuleFile}
    fields = {f"{m.__name__}.{name}" for m in documented_models()
              for name, info in m.model_fields.items() if not info.description}
    assert fields == set(DESCRIPTIONS), "describe new fields, drop removed ones"
    text = DOC.read_text()
    for key in ("`storage.record_levels_bps`", "`venues[].ccxt`", "`channels.NAME.tags`",
                "`venues[].books`", "`venues[].sim.calm`", "`rules[].for`"):
        assert key in text
    for _, prefix, root, _ in FILES:
        for path, model in _sections(prefix, root):
            for name, info in model.model_fields.items():
                key = info.alias or name
                assert f"`{path}.{key}`" in text if path else f"`{key}`" in text
