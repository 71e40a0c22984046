"""The baselines of terrain's own models file (installed as terrain.shipped_baselines): a
project running terrain's default entries compares with them until it records its own."""
