"""Write reference/spec.md: the sweep spec's reference, generated from its own definition.

Run by mkdocs-gen-files at build time. Everything on the page is read from the code, so it cannot drift
from what ``parse_spec`` accepts: the YAML's top-level keys, the allowed values (samplers, pruners,
seed policies, objectives), the config fields a spec may search or fix (with their types and
defaults, from ``ModelConfig`` and ``TrainConfig``), the metric settings (``MetricConfig``), the
dataclasses a spec is parsed into (``SweepSpec``, ``ParamSpec``, ``RaceConfig``) and the embedded
default spec. A field's text is its own docstring where it has one (a string right below the field,
or ``metadata={"doc": ...}``), else its line in the class's ``Attributes:`` section.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path

import griffe
import mkdocs_gen_files
import yaml

SRC = Path(__file__).resolve().parents[2] / "src"

from betasweep.sweeps import spec as spec_module  # noqa: E402  (after the paths above, for clarity)


def attributes_section(cls: type) -> dict[str, str]:
    """``name -> text`` from the ``Attributes:`` section of ``cls``'s Google-style docstring."""
    doc = inspect.getdoc(cls) or ""
    parsed = griffe.Docstring(doc, parser="google").parse()
    found: dict[str, str] = {}
    for section in parsed:
        if section.kind.value == "attributes":
            for item in section.value:
                for name in item.name.split(","):
                    found[name.strip()] = " ".join(item.description.split())
    return found


def griffe_docs(cls: type) -> dict[str, str]:
    """``name -> docstring`` of the class's attributes that have a docstring of their own (griffe reads the
    string below a field)."""
    try:
        loaded = griffe.load(f"{cls.__module__}.{cls.__qualname__}", search_paths=[str(SRC)], docstring_parser="google")
    except Exception:  # noqa: BLE001 (a class griffe cannot reach: fall back to the other sources)
        return {}
    return {name: " ".join(member.docstring.value.split())
            for name, member in loaded.members.items() if member.is_attribute and member.docstring}


def field_docs(cls: type) -> dict[str, str]:
    """The text of each field of the dataclass ``cls`` (see the module docstring for the order tried)."""
    docs = attributes_section(cls)
    docs.update(griffe_docs(cls))
    for item in dataclasses.fields(cls):
        for key in ("doc", "help", "description"):
            if key in item.metadata:
                docs[item.name] = " ".join(str(item.metadata[key]).split())
    return docs


def type_name(kind) -> str:
    text = kind if isinstance(kind, str) else getattr(kind, "__name__", None) or str(kind)
    return str(text).replace("typing.", "").replace("NoneType", "None")


def default_of(item: dataclasses.Field) -> str:
    if item.default is not dataclasses.MISSING:
        return f"`{item.default!r}`"
    if item.default_factory is not dataclasses.MISSING:
        return f"`{item.default_factory()!r}`"
    return "required"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def dataclass_table(cls: type) -> str:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for item in dataclasses.fields(cls):
        rows.append(f"| `{item.name}` | {cell(type_name(hints.get(item.name, item.type)))} | {cell(default_of(item))} "
                    f"| {cell(docs.get(item.name, ''))} |")
    return "\n".join(rows)


def config_fields_table() -> str:
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig

    owners = {}
    for config in (ModelConfig, TrainConfig):
        docs = field_docs(config)
        for item in dataclasses.fields(config):
            owners.setdefault(item.name, (config.__name__, default_of(item), docs.get(item.name, "")))
    rows = ["| field | type | default | from | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, kind in spec_module.CONFIG_FIELDS.items():
        owner, default, doc = owners.get(name, ("", "", ""))
        rows.append(f"| `{name}` | {cell(type_name(kind))} | {cell(default)} | `{owner}` | {cell(doc)} |")
    return "\n".join(rows)


def values(name: str) -> str:
    found = getattr(spec_module, name, None)
    if found is None:
        return "(not defined in this version)"
    return ", ".join(f"`{value}`" for value in found)


def objectives_table() -> str:
    rows = ["| `metric.objective` | computed by panel metric |", "| --- | --- |"]
    for objective, metric in spec_module.OBJECTIVE_METRICS.items():
        rows.append(f"| `{objective}` | {f'`{metric}`' if metric else 'none: compares a trial’s seeds with each other'} |")
    return "\n".join(rows)


def key_tables() -> str:
    """One table per mapping of a spec (``SPEC_KEYS``: mapping -> {key: what it holds}), where the spec module
    defines it; a key documented as "See RaceConfig." gets RaceConfig's field text."""
    tables = getattr(spec_module, "SPEC_KEYS", None)
    if not tables:
        return ""
    race_docs = field_docs(spec_module.RaceConfig)
    parts = ["## Keys, mapping by mapping", "",
             "Every mapping of a spec and the keys it allows (any other key is refused, naming it):", ""]
    for mapping, keys in tables.items():
        parts += [f"### {f'`{mapping}`' if mapping else 'Top level'}", "", "| key | what it holds |", "| --- | --- |"]
        for key, text in keys.items():
            if text.strip().startswith("See RaceConfig") and key in race_docs:
                text = race_docs[key]
            parts.append(f"| `{key}` | {cell(' '.join(text.split()))} |")
        parts.append("")
    return "\n".join(parts)


def top_keys() -> str:
    keys = getattr(spec_module, "_TOP_KEYS", None) or getattr(spec_module, "TOP_KEYS", None)
    if not keys:
        return "(see `SweepSpec` below)"
    return ", ".join(f"`{key}`" for key in sorted(keys))


def page() -> str:
    from betasweep.metrics import MetricConfig

    module_doc = inspect.getdoc(spec_module) or ""
    parts = [
        "# Sweep spec reference",
        "",
        "<!-- Generated from src/betasweep/sweeps/spec.py at build time (docs/scripts/gen_spec_page.py). -->",
        "",
        "A spec is a YAML file (or the embedded default of `betasweep sweep` without SPEC), validated whole by "
        "`betasweep.sweeps.spec.parse_spec` before anything runs: an unknown key, an empty range, β <= 0 or an "
        "unknown dataset is refused in one line naming the key (exit code 2), and no study is created. "
        "How to use it: [Sweeps and reading the report](../guides/sweeps.md).",
        "",
        "## From the module's docstring",
        "",
        textwrap.indent(module_doc, ""),
        "",
        "## Keys",
        "",
        f"Top-level keys: {top_keys()}.",
        "",
        f"- `sampler.name`: {values('SAMPLERS')} (`grid`: lists of choices only).",
        f"- `pruner.name`: {values('PRUNERS')}.",
        f"- `seed.policy`: {values('SEED_POLICIES')}.",
        f"- `second_objective`: {values('OBJECTIVES')} (minimised; the study becomes two-objective).",
        f"- Label-free objectives (compare a trial's seeds, need `seeds_per_trial >= 2`): {values('LABEL_FREE')}.",
        "",
        objectives_table(),
        "",
        key_tables(),
        "## Fields a spec may search or fix",
        "",
        "Any of these, under `search_space` (a list of choices, or `{low, high, log, step}`) or `fixed`:",
        "",
        config_fields_table(),
        "",
        "## Metric settings (`metric.full`, `metric.intermediate`, `metric.curve`)",
        "",
        dataclass_table(MetricConfig),
        "",
        "## `SweepSpec`: what a spec is parsed into",
        "",
        dataclass_table(spec_module.SweepSpec),
        "",
        "## `ParamSpec`: one searched parameter",
        "",
        dataclass_table(spec_module.ParamSpec),
        "",
        "## `RaceConfig`: the `race:` key",
        "",
        dataclass_table(spec_module.RaceConfig),
        "",
        "## The embedded default (`betasweep sweep` without SPEC)",
        "",
        "```yaml",
        yaml.safe_dump(spec_module.DEFAULT_SPEC, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
    ]
    default_doc = griffe_default_doc()
    if default_doc:
        parts += [default_doc, ""]
    return "\n".join(parts)


def griffe_default_doc() -> str:
    try:
        module = griffe.load("betasweep.sweeps.spec", search_paths=[str(SRC)])
        member = module.members.get("DEFAULT_SPEC")
        return " ".join(member.docstring.value.split()) if member is not None and member.docstring else ""
    except Exception:  # noqa: BLE001
        return ""


with mkdocs_gen_files.open("reference/spec.md", "w") as out:
    out.write(page())
mkdocs_gen_files.set_edit_path("reference/spec.md", "src/betasweep/sweeps/spec.py")
