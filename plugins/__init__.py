"""terrain's pytest plugin (installed as terrain.plugins, entry point `pytest11: terrain`):
options, parametrisation, load-once fixtures, findings, baselines, report, progress.

pytest loads this module through its entry point and, through `pytest_plugins`, each
concern's module below; a project that installs terrain needs no conftest.py.
"""

# Listed before any other listed module imports them (pytest rewrites the asserts of each
# listed module at its first import).
pytest_plugins = [
    "terrain.plugins.options",
    "terrain.plugins.deltas",
    "terrain.plugins.loading",
    "terrain.plugins.recording",
    "terrain.plugins.parametrize",
    "terrain.plugins.bad_input",
    "terrain.plugins.baselines",
    "terrain.plugins.evaluation",
    "terrain.plugins.collector",
    "terrain.plugins.html_report",
    "terrain.plugins.output_checks",
    "terrain.plugins.run_lock",
    "terrain.plugins.progress",
]
