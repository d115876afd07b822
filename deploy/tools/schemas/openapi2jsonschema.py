"""Converts Kubernetes' OpenAPI document and CustomResourceDefinitions into strict, standalone JSON schemas in
the layout kubeconform reads (`-schema-location` templates in deploy/tools/deploy_check.py).

    python openapi2jsonschema.py kubernetes SWAGGER_JSON OUT_DIR GROUP/VERSION/KIND ...
        one file per kind: OUT_DIR/<kind>-<group>-<version>.json (core group: <kind>-<version>.json), the
        definitions inlined (kubeconform's "standalone" schemas)
    python openapi2jsonschema.py crd CRD_YAML OUT_DIR
        one file per served version of each CRD: OUT_DIR/<group>/<kind>_<version>.json

Strict, like `kubectl --validate=strict` and kubeconform's "-strict" schemas: an object that lists its
properties admits no other (unless the schema says x-kubernetes-preserve-unknown-fields), so a misspelled
field is an error. Kubernetes' own encodings are spelled out: int-or-string and resource quantities accept a
number or a string, `nullable` admits null. Descriptions are dropped (they are half the size, and no validator
reads them). apiVersion and kind are pinned to the schema's own.
"""

import json
import sys
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]
# Keywords whose value is a map of name -> schema, or a list of schemas, or one schema.
SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_ONE = ("items", "additionalProperties", "not")
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}


def strict(schema: Any) -> Any:
    """`schema` with the rules of the module docstring applied, recursively; the input is not changed."""
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-int-or-string") or schema.get("format") == "int-or-string":
        return dict(INT_OR_STRING)
    out: Schema = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict(sub) for sub in value]
        elif key in SCHEMA_ONE and isinstance(value, dict):
            out[key] = strict(value)
        else:
            out[key] = value
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def pin_kind(schema: Schema, api_version: str, kind: str) -> Schema:
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    return schema


def inline(schema: Any, definitions: dict[str, Schema], seen: tuple[str, ...] = ()) -> Any:
    """Every `#/definitions/X` reference replaced by X itself (a recursive one is left open: any object)."""
    if isinstance(schema, list):
        return [inline(item, definitions, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.removeprefix("#/definitions/")
        if name in seen:
            return {"type": "object"}
        if name == QUANTITY:
            return {"oneOf": [{"type": "string"}, {"type": "number"}]}
        return inline(definitions[name], definitions, (*seen, name))
    return {key: inline(value, definitions, seen) for key, value in schema.items()}


def kubernetes(swagger_path: Path, out_dir: Path, kinds: list[str]) -> list[Path]:
    definitions: dict[str, Schema] = json.loads(swagger_path.read_text())["definitions"]
    by_gvk = {
        (gvk["group"], gvk["version"], gvk["kind"]): name
        for name, schema in definitions.items()
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
        if not name.endswith("List") and "meta.v1" not in name
    }
    written = []
    for spec in kinds:
        group, version, kind = spec.split("/")
        group = "" if group == "core" else group
        name = by_gvk.get((group, version, kind))
        if name is None:
            raise SystemExit(f"{spec}: not in {swagger_path}")
        api_version = f"{group}/{version}" if group else version
        schema = pin_kind(strict(inline(definitions[name], definitions)), api_version, kind)
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
        path = out_dir / f"{kind.lower()}{suffix}.json"
        written.append(write(path, schema))
    return written


def crd(crd_path: Path, out_dir: Path) -> list[Path]:
    written = []
    for doc in yaml.safe_load_all(crd_path.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema = pin_kind(schema, f"{group}/{version['name']}", kind)
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            written.append(write(out_dir / group / f"{kind.lower()}_{version['name']}.json", schema))
    return written


def write(path: Path, schema: Schema) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    return path


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "kubernetes":
        paths = kubernetes(Path(argv[1]), Path(argv[2]), argv[3:])
    elif len(argv) == 3 and argv[0] == "crd":
        paths = crd(Path(argv[1]), Path(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for path in paths:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
