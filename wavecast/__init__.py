"""wavecast's core: plain functions for every stage, importable without Prefect."""
