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
ROOT = Path(__file__).resolve().parent.parent / "fixtures"


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
            {"path": "r4/resource-types.json", "source": "derived from package/StructureDefinition-*.json",
             "sha256": _sha256(data)}
        )
        (ROOT / "r4" / "examples").mkdir(exist_ok=True)
        for example in EXAMPLES:
            data = read(example)
            (ROOT / "r4" / "examples" / example).write_bytes(data)
            entries.append(
                {"path": f"r4/examples/{example}", "source": f"package/{example}", "sha256": _sha256(data)}
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
