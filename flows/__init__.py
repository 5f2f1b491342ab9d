"""Prefect flows and deployments."""
