"""terrain's plugin comes from its installed entry point (pytest11: terrain.plugins); this
repository's self-tests of the plugin also need pytester."""

pytest_plugins = ["pytester"]
