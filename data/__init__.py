"""Datasets, environments, generated offline tasks and the shared model loaders."""
