"""Orchestration on top of every stage: the `wordsmile` CLI, the local build runner and `doctor`.
The only package (with flows/, the Prefect side) that knows every stage."""
