"""The value-set build: recipes (recipes/*.yaml) applied to the copied sources (sources/) by engine.py."""
