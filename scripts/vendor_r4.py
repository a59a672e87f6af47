"""Vendor the pieces of the official FHIR R4 package this project uses, with a manifest.

Usage: python scripts/vendor_r4.py PATH/TO/hl7.fhir.r4.examples-4.0.1.tgz
(obtain the tarball with ``npm pack hl7.fhir.r4.examples@4.0.1``). Writes under
``fixtures/r4/`` and rewrites ``fixtures/MANIFEST.json``. Nothing is downloaded at
test time; the loader verifies every sha256 recorded here.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
LICENCE = "CC0-1.0"
EXAMPLES = [
    "Patient-example.json",
    "Observation-example.json",
    "Encounter-example.json",
    "Organization-1.json",
    "Practitioner-example.json",
]
# Extra examples for the extraction differential test: the `<Type>-example.json` of
# every resource type, else the first `<Type>-*.json` that is small enough (Bundles
# and anything over this size are skipped to keep the checkout small).
SEARCH_EXAMPLE_MAX_BYTES = 40_000
SEARCH_PARAMETER_FIELDS = (
    "url",
    "code",
    "base",
    "type",
    "expression",
    "target",
    "comparator",
    "modifier",
    "component",
    "multipleOr",
    "multipleAnd",
)
ROOT = Path(__file__).resolve().parent.parent / "fixtures"


def _is_core_search_parameter(definition: dict[str, object]) -> bool:
    """True for the parameters of the core specification.

    The package also carries example SearchParameters (``SearchParameter-example*``)
    and ones defined on extensions (``*-extensions-*``, ``*-genetic-*``); those are
    not part of R4's base search parameters and stay out of the registry.
    """
    ident = str(definition["id"])
    return not (
        ident.startswith("example")
        or "-extensions-" in ident
        or "-genetic-" in ident
        or not definition.get("base")
    )


def _search_parameters(names: list[str], read: Callable[[str], bytes]) -> bytes:
    compact = []
    for name in names:
        definition = json.loads(read(name))
        if not _is_core_search_parameter(definition):
            continue
        compact.append(
            {key: definition[key] for key in SEARCH_PARAMETER_FIELDS if key in definition}
        )
    compact.sort(key=lambda entry: entry["url"])
    document = {
        "description": "The core FHIR R4 SearchParameter definitions, reduced to the fields "
        "the search registry uses (one entry per package/SearchParameter-*.json, "
        "examples and extension-defined parameters excluded)",
        "searchParameters": compact,
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def _patient_compartment(read: Callable[[str], bytes]) -> bytes:
    definition = json.loads(read("CompartmentDefinition-patient.json"))
    document = {
        "description": "The R4 Patient CompartmentDefinition: for each resource type, the "
        "search parameters that link it to the patient",
        "url": definition["url"],
        "resources": {
            entry["code"]: sorted(entry.get("param", [])) for entry in definition["resource"]
        },
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(tarball: str) -> None:
    tar_bytes = Path(tarball).read_bytes()
    entries: list[dict[str, str]] = []
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers()}

        def read(name: str) -> bytes:
            handle = archive.extractfile(members[f"package/{name}"])
            assert handle is not None
            return handle.read()

        types = []
        for name in sorted(members):
            base = name.removeprefix("package/")
            if not base.startswith("StructureDefinition-"):
                continue
            definition = json.loads(read(base))
            if (
                definition.get("kind") == "resource"
                and definition.get("derivation") == "specialization"
                and not definition.get("abstract")
            ):
                types.append(definition["type"])
        derived = {
            "description": "Concrete R4 resource types: every StructureDefinition with "
            "kind=resource, derivation=specialization, abstract=false",
            "resourceTypes": sorted(types),
        }
        data = (json.dumps(derived, indent=2, sort_keys=True) + "\n").encode()
        (ROOT / "r4").mkdir(parents=True, exist_ok=True)
        (ROOT / "r4" / "resource-types.json").write_bytes(data)
        entries.append(
            {
                "path": "r4/resource-types.json",
                "source": "derived from package/StructureDefinition-*.json",
                "sha256": _sha256(data),
            }
        )
        (ROOT / "r4" / "examples").mkdir(exist_ok=True)
        package_names = sorted(m.removeprefix("package/") for m in members)
        search_parameter_names = [
            n for n in package_names if n.startswith("SearchParameter-") and n.endswith(".json")
        ]
        data = _search_parameters(search_parameter_names, read)
        (ROOT / "r4" / "search-parameters.json").write_bytes(data)
        entries.append(
            {
                "path": "r4/search-parameters.json",
                "source": "derived from package/SearchParameter-*.json",
                "sha256": _sha256(data),
            }
        )
        data = _patient_compartment(read)
        (ROOT / "r4" / "compartment-patient.json").write_bytes(data)
        entries.append(
            {
                "path": "r4/compartment-patient.json",
                "source": "derived from package/CompartmentDefinition-patient.json",
                "sha256": _sha256(data),
            }
        )
        examples = list(EXAMPLES)
        for resource_type in types:
            if resource_type == "Bundle":
                continue
            candidates = [f"{resource_type}-example.json"] + [
                n
                for n in package_names
                if n.startswith(f"{resource_type}-") and n.endswith(".json")
            ]
            for candidate in candidates:
                if f"package/{candidate}" not in members:
                    continue
                if members[f"package/{candidate}"].size > SEARCH_EXAMPLE_MAX_BYTES:
                    continue
                if json.loads(read(candidate)).get("resourceType") != resource_type:
                    continue
                if candidate not in examples:
                    examples.append(candidate)
                break
        for example in examples:
            data = read(example)
            (ROOT / "r4" / "examples" / example).write_bytes(data)
            entries.append(
                {
                    "path": f"r4/examples/{example}",
                    "source": f"package/{example}",
                    "sha256": _sha256(data),
                }
            )
    manifest = {
        "packages": [
            {
                "name": PACKAGE,
                "version": VERSION,
                "licence": LICENCE,
                "registry": "npm",
                "tarball_sha256": _sha256(tar_bytes),
                "files": entries,
            }
        ]
    }
    (ROOT / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
