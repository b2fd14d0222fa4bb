"""Where an AI job runs besides a pod: the local subprocess runner and the guard of its MLflow runs."""
