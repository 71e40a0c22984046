"""terrain's property suite (installed as terrain.properties): one short test per declared
property (terrain/checks/); run it with `pytest --pyargs terrain.properties`."""
