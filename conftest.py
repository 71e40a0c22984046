"""Registers terrain's pytest plugins; the plugins themselves live in plugins/."""

pytest_plugins = [
    "plugins.options",
    "plugins.parametrize",
    "plugins.loading",
    "plugins.recording",
    "plugins.html_report",
]
