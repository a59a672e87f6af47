"""Reference backends of helios-conformance, registered through the same entry-point
group (``helios_conformance.backends``) that third-party adapters use."""
