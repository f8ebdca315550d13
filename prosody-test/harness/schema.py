"""The part of JSON Schema the contract's schema (docs/contract.schema.json)
uses, checked by hand: the tests hold every request to it."""

import json
import os


from .env import ROOT

# The JSON contract as a JSON Schema: every request a WebService receives is
# checked against its `request` definition.
with open(os.path.join(ROOT, "docs", "contract.schema.json")) as _f:
    CONTRACT_SCHEMA = json.load(_f)

_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value, schema, path="$"):
    """Where `value` breaks `schema` (a definition name of
    docs/contract.schema.json, or a schema): a list of messages, empty when
    it conforms. Knows the keywords that file uses: $ref, type, enum, const,
    required, properties, additionalProperties, items, anyOf, allOf,
    minimum, maximum."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/$defs/{schema}"}
    if "$ref" in schema:
        target = CONTRACT_SCHEMA
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, path)
    errors = []
    types = schema.get("type")
    if types and not any(_is_type(value, t) for t in ([types] if isinstance(types, str) else types)):
        return [f"{path}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value!r} is out of range")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: '{key}' is missing")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: '{key}' is not described by the schema")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, path)
    if "anyOf" in schema and all(schema_errors(value, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: {value!r} matches none of anyOf")
    return errors
