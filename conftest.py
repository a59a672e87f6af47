"""Repository root conftest.

The helios-conformance plugin is registered once, by its ``pytest11`` entry point
(``pip install -e .``); listing it in ``pytest_plugins`` here would register it twice.
"""

pytest_plugins: list[str] = []
