"""Registers terrain's pytest plugins; the plugins themselves live in plugins/."""

pytest_plugins = [
    "plugins.options",
    "plugins.parametrize",
    "plugins.loading",
    "plugins.bad_input",
    "plugins.baselines",
    "plugins.recording",
    "plugins.evaluation",
    "plugins.collector",
    "plugins.html_report",
    "plugins.progress",
    # for the harness self-tests in tests/plugin
    "pytester",
]
