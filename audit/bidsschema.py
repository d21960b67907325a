"""BIDS file-name rules, taken from the official schema (bidsschematools).

Nothing here is a hand-written list of entities or suffixes: entity short
names, their order, which suffixes and extensions go with which datatype and
which entities each file rule allows or requires are all read from
:func:`bidsschematools.schema.load_schema`. Parsing a name is a split on
``_`` and ``-``; *judging* it is a lookup in tables built from those rules,
memoised per (datatype, suffix, extension, entity keys) so that 160,000 files
cost a few dictionary look-ups each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

__all__ = ["BidsRules", "ParsedName", "rules", "split_extension"]

#: Extensions that the inheritance principle applies to (metadata, gradients).
_INHERITABLE = frozenset({".json", ".tsv", ".bval", ".bvec"})


def split_extension(name: str) -> tuple[str, str]:
    """Split a BIDS file name at its first dot: ``('sub-01_T1w', '.nii.gz')``."""
    dot = name.find(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


@dataclass(frozen=True, slots=True)
class ParsedName:
    """A file name taken apart: entities (long names, in order), suffix, extension."""

    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str
    error: str | None = None

    def get(self, entity: str) -> str | None:
        for key, value in self.entities:
            if key == entity:
                return value
        return None


class BidsRules:
    """File-name rules of one BIDS schema version."""

    def __init__(self) -> None:
        from bidsschematools import schema as bst

        self._schema = bst.load_schema()

    @cached_property
    def bids_version(self) -> str:
        return str(self._schema["bids_version"])

    @cached_property
    def entity_order(self) -> tuple[str, ...]:
        """Long entity names in the schema's order."""
        return tuple(self._schema["rules"]["entities"])

    @cached_property
    def short_to_long(self) -> dict[str, str]:
        ents = self._schema["objects"]["entities"]
        return {ents[name]["name"]: name for name in self.entity_order}

    @cached_property
    def long_to_short(self) -> dict[str, str]:
        return {v: k for k, v in self.short_to_long.items()}

    @cached_property
    def entity_format(self) -> dict[str, str]:
        ents = self._schema["objects"]["entities"]
        return {name: ents[name].get("format", "label") for name in self.entity_order}

    @cached_property
    def format_patterns(self) -> dict[str, re.Pattern[str]]:
        """Value patterns of entity formats (``label``, ``index``) from the schema."""
        formats = self._schema["objects"]["formats"]
        return {name: re.compile(f"^(?:{formats[name]['pattern']})$") for name in set(self.entity_format.values())
                if name in formats}

    @cached_property
    def datatypes(self) -> frozenset[str]:
        return frozenset(self._schema["objects"]["datatypes"].keys())

    @cached_property
    def _raw_rules(self) -> dict[tuple[str, str], list[tuple[frozenset[str], dict[str, str]]]]:
        """(datatype, suffix) -> [(extensions, {entity: required|optional})]."""
        table: dict[tuple[str, str], list[tuple[frozenset[str], dict[str, str]]]] = {}
        for group in self._schema["rules"]["files"]["raw"].values():
            for rule in group.values():
                entities = {k: (v if isinstance(v, str) else v.get("level", "optional"))
                            for k, v in dict(rule.get("entities", {})).items()}
                exts = frozenset(rule.get("extensions", ()))
                for datatype in rule.get("datatypes", ()):
                    for suffix in rule.get("suffixes", ()):
                        table.setdefault((datatype, suffix), []).append((exts, entities))
        return table

    @cached_property
    def _table_rules(self) -> dict[str, tuple[frozenset[str], dict[str, str]]]:
        """suffix -> (extensions, entities) for sessions.tsv / scans.tsv."""
        out = {}
        for rule in self._schema["rules"]["files"]["common"]["tables"].values():
            for suffix in rule.get("suffixes", ()):
                entities = {k: (v if isinstance(v, str) else v.get("level", "optional"))
                            for k, v in dict(rule.get("entities", {})).items()}
                out[suffix] = (frozenset(rule.get("extensions", ())), entities)
        return out

    @cached_property
    def top_level_names(self) -> frozenset[str]:
        """Files and folders allowed at the dataset root besides ``sub-*``."""
        names: set[str] = set()
        common = self._schema["rules"]["files"]["common"]
        for rule in common["core"].values():
            if "path" in rule:
                names.add(rule["path"])
            if "stem" in rule:
                for ext in rule.get("extensions", [""]):
                    names.add(rule["stem"] + ext)
        for rule in common["tables"].values():
            if "stem" in rule:
                for ext in rule.get("extensions", ()):
                    names.add(rule["stem"] + ext)
        return frozenset(names)

    @cached_property
    def opaque_dirs(self) -> frozenset[str]:
        raw = self._schema["rules"]["directories"]["raw"]
        return frozenset(v["name"] for v in raw.values() if hasattr(v, "get") and v.get("opaque") and v.get("name"))

    @cached_property
    def all_suffixes(self) -> frozenset[str]:
        return frozenset(s for (_, s) in self._raw_rules)

    def parse(self, name: str) -> ParsedName:
        """Take a file name apart (no judgement beyond its shape)."""
        stem, ext = split_extension(name)
        parts = stem.split("_")
        suffix = parts[-1]
        entities = []
        for part in parts[:-1]:
            key, sep, value = part.partition("-")
            if not sep or not value:
                return ParsedName(tuple(entities), suffix, ext, f"'{part}' is not an entity key-value pair")
            long = self.short_to_long.get(key)
            if long is None:
                return ParsedName(tuple(entities), suffix, ext, f"unknown entity '{key}'")
            entities.append((long, value))
        return ParsedName(tuple(entities), suffix, ext)

    def judge_data_file(self, parsed: ParsedName, datatype: str) -> str | None:
        """Return why a file in ``sub-*/[ses-*/]datatype/`` is not valid BIDS, or None."""
        if parsed.error:
            return parsed.error
        keys = tuple(k for k, _ in parsed.entities)
        for key, value in parsed.entities:
            fmt = self.entity_format.get(key, "label")
            pattern = self.format_patterns.get(fmt)
            if pattern is not None and not pattern.match(value):
                return f"entity '{self.long_to_short[key]}' has a value that is not a {fmt}: '{value}'"
        return _judge_cached(self, datatype, parsed.suffix, parsed.extension, keys)

    def judge_table(self, parsed: ParsedName) -> str | None:
        """Judge a ``sub-*_sessions.tsv`` / ``*_scans.tsv`` name."""
        if parsed.error:
            return parsed.error
        rule = self._table_rules.get(parsed.suffix)
        if rule is None:
            return f"'{parsed.suffix}' files are not allowed here"
        exts, allowed = rule
        if parsed.extension not in exts:
            return f"extension '{parsed.extension}' is not allowed for {parsed.suffix} files"
        keys = [k for k, _ in parsed.entities]
        for key in keys:
            if key not in allowed:
                return f"entity '{self.long_to_short[key]}' is not allowed in {parsed.suffix} files"
        return None

    def _judge(self, datatype: str, suffix: str, ext: str, keys: tuple[str, ...]) -> str | None:
        if datatype not in self.datatypes:
            return f"'{datatype}' is not a BIDS datatype"
        candidates = self._raw_rules.get((datatype, suffix))
        if not candidates:
            if suffix in self.all_suffixes:
                return f"suffix '{suffix}' is not allowed in datatype '{datatype}'"
            return f"unknown suffix '{suffix}'"
        order = [self.entity_order.index(k) for k in keys]
        if order != sorted(order) or len(set(keys)) != len(keys):
            expected = "_".join(self.long_to_short[k] for k in sorted(set(keys), key=self.entity_order.index))
            return f"entities out of order or repeated (expected order {expected})"
        last = "no rule"
        for exts, allowed in candidates:
            if ext not in exts and ext + "/" not in exts:
                last = f"extension '{ext}' is not allowed for {datatype}/{suffix}"
                continue
            extra = [k for k in keys if k not in allowed]
            if extra:
                last = f"entity '{self.long_to_short[extra[0]]}' is not allowed for {datatype}/{suffix}"
                continue
            missing = [k for k, level in allowed.items() if level == "required" and k not in keys]
            if missing:
                last = f"required entity '{self.long_to_short[missing[0]]}' is missing"
                continue
            return None
        return last

    def is_inheritable_sidecar(self, parsed: ParsedName) -> bool:
        """A metadata file above the data level (``task-rest_bold.json``, ``T1w.json``)."""
        return parsed.error is None and parsed.extension in _INHERITABLE and (
            parsed.suffix in self.all_suffixes or parsed.suffix in self._table_rules)


@cache
def _judge_cached(r: BidsRules, datatype: str, suffix: str, ext: str, keys: tuple[str, ...]) -> str | None:
    return r._judge(datatype, suffix, ext, keys)


@cache
def rules() -> BidsRules:
    """The rules of the installed bidsschematools schema (loaded once)."""
    return BidsRules()
