"""docs/configuration.md's variable tables and .env.example's variables are generated from the
settings declarations (scripts/generate_config_docs.py) and name only real variables; a backend
setting declared once is documented, exampled and redacted with no other edit."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from functools import cache
from types import ModuleType
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.settings import Settings
from tests.conftest import REPO

DOCS = REPO / "docs" / "configuration.md"
ENV_EXAMPLE = REPO / ".env.example"


@cache
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_config_docs", REPO / "scripts" / "generate_config_docs.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def pipeline_variables() -> set[str]:
    return {name for names, _, _ in generator().rows(Settings) for name in names}


def test_the_generated_tables_are_up_to_date():
    text = DOCS.read_text()
    assert generator().render(text) == text, (
        "docs/configuration.md is out of date: run python scripts/generate_config_docs.py"
    )


def test_check_mode_fails_on_a_drifted_table(tmp_path, monkeypatch):
    gen = generator()
    drifted = DOCS.read_text().replace("| `PIPELINE_SEED` | `42` |", "| `PIPELINE_SEED` | `43` |")
    assert drifted != DOCS.read_text()
    monkeypatch.setattr(gen, "DOCS", tmp_path / "configuration.md")
    gen.DOCS.write_text(drifted)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert gen.DOCS.read_text() == DOCS.read_text()


def test_env_example_is_generated_and_check_mode_fails_when_it_drifts(tmp_path, monkeypatch):
    gen = generator()
    text = ENV_EXAMPLE.read_text()
    assert gen.render_env_example(text) == text, ".env.example is out of date"
    drifted = text.replace("# PIPELINE_SEED=42", "# PIPELINE_SEED=43")
    assert drifted != text
    monkeypatch.setattr(gen, "ENV_EXAMPLE", tmp_path / ".env.example")
    gen.ENV_EXAMPLE.write_text(drifted)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.ENV_EXAMPLE.read_text() == text


def test_the_check_command_runs_from_a_checkout():
    done = subprocess.run(
        [sys.executable, "scripts/generate_config_docs.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_field_becomes_a_row_with_its_variable_default_and_description():
    class Inner(BaseModel):
        max_tries: int = Field(3, description="How often.")

    class Tiny(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="PIPELINE_", env_nested_delimiter="__")
        home_dir: str = Field("/x", description="Where | things live.")
        url: str | None = Field(None, validation_alias=AliasChoices("OTHER_URL", "PIPELINE_URL", "url"))
        inner: Inner = Field(default_factory=Inner)

    table = generator().pipeline_table(Tiny)
    assert "| `PIPELINE_HOME_DIR` | `/x` | Where \\| things live. |" in table
    assert "| `OTHER_URL` or `PIPELINE_URL` | — |  |" in table
    assert "| `PIPELINE_INNER__MAX_TRIES` | `3` | How often. |" in table


def test_a_throwaway_backend_setting_is_documented_exampled_and_redacted_from_its_one_declaration(
    monkeypatch, tmp_path
):
    """One field (type, default, description, example, chart metadata) is the whole declaration
    for the docs row, the .env.example lines and redaction; tests/charts/test_dag_settings.py adds
    the chart's side (its values schema, its ConfigMap or Secret line)."""
    from pipeline import redaction

    class Throwaway(Settings):
        vendor_url: str | None = Field(
            None, description="The vendor's API.", examples=["https://vendor.example.com/api"]
        )
        vendor_mode: Literal["fast", "safe"] = Field("safe", description="How.", examples=["safe"])
        vendor_region: str = Field("eu", description="Where.", json_schema_extra={"chart": "x.region"})
        vendor_retries: int = Field(2, description="Not in .env.example: no example, no chart value.")
        vendor_key: SecretStr | None = Field(
            None,
            description="The vendor's key.",
            json_schema_extra={"chart": "global.pipeline.existingSecret", "chart_secret": True},
        )

    gen = generator()
    table = gen.pipeline_table(Throwaway)
    assert "| `PIPELINE_VENDOR_URL` | — | The vendor's API. |" in table
    assert "| `PIPELINE_VENDOR_KEY` | — | The vendor's key. |" in table
    example = gen.env_example(Throwaway)
    assert "# The vendor's API.\n# PIPELINE_VENDOR_URL=https://vendor.example.com/api\n" in example
    assert "# How. One of: fast, safe.\n# PIPELINE_VENDOR_MODE=safe\n" in example
    assert "\n# PIPELINE_VENDOR_KEY=\n" in example  # a secret: shown, never with a value
    assert "# Where.\n# PIPELINE_VENDOR_REGION=eu\n" in example  # set by the chart: its default
    assert "PIPELINE_VENDOR_RETRIES" not in example and "PIPELINE_VENDOR_RETRIES" in table
    assert example.startswith(gen.env_example(Settings).split("\n\n")[0])  # the real ones too

    secret = "vendor-key-" + "q7" * 8
    monkeypatch.chdir(tmp_path)  # no .env of the caller's
    loaded = Throwaway.load(vendor_key=secret, vendor_url="https://vendor.example.com/api")
    assert secret not in json.dumps(loaded.redacted())
    assert secret not in redaction.redact(f"the vendor refused {secret}")
    assert loaded.redacted()["vendor_url"] == "https://vendor.example.com/api"


def test_every_variable_a_generated_row_names_is_read_by_the_settings(monkeypatch):
    """The names follow pydantic-settings' own rule: setting one changes the loaded value."""
    for name in [n for n in __import__("os").environ if n.startswith("PIPELINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIPELINE_TRAIN__MAX_EPOCHS", "7")
    monkeypatch.setenv("PIPELINE_S3__REGION", "eu-west-3")
    monkeypatch.setenv("PIPELINE_DATA__SOURCE__HTTP__MAX_PAGES", "9")
    assert {
        "PIPELINE_TRAIN__MAX_EPOCHS",
        "PIPELINE_S3__REGION",
        "PIPELINE_DATA__SOURCE__HTTP__MAX_PAGES",
    } <= (pipeline_variables())
    settings = Settings.load()
    assert (settings.train.max_epochs, settings.s3.region, settings.data.source.http.max_pages) == (
        7,
        "eu-west-3",
        9,
    )


def _mentioned(text: str) -> set[str]:
    return set(re.findall(r"\b(PIPELINE_[A-Z0-9_]*[A-Z0-9])\b", text))


def test_docs_and_env_example_name_only_real_settings():
    real = pipeline_variables()
    for path in (DOCS, ENV_EXAMPLE):
        unknown = {
            name
            for name in _mentioned(path.read_text())
            # a prefix such as PIPELINE_S3__ or PIPELINE_SWEEP__ stands for its group
            if name not in real and not any(v.startswith(name + "__") for v in real)
        }
        assert unknown == set(), f"{path.name} names variables no setting declares: {sorted(unknown)}"


def test_env_example_sets_only_real_settings():
    assignments = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M)
    assert assignments, "no variable found in .env.example"
    assert set(assignments) - pipeline_variables() == set()


def test_each_dag_setting_is_declared_once_and_its_defaults_derive_from_the_declaration():
    settings = generator()._dag_settings_module()
    declared = settings.DagSettings.declared()
    envs = [spec.env for spec in declared.values()]
    assert len(envs) == len(set(envs)) and all(env.startswith("MLP_DAG_") for env in envs)
    # the dataclass defaults are what an empty environment gives (no step names: no per-step entries)
    assert settings.DagSettings() == settings.DagSettings.from_env((), {})
    unset = settings.DagSettings.from_env(("ingest", "train"), {})
    assert unset.gpu_schedule_timeout_s == declared["gpu_schedule_timeout_s"].default == 1800
    assert unset.step_timeouts_s == {"ingest": 3600, "train": 3600}
    table = generator().dag_table()
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == envs
