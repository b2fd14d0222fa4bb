"""The provider's operators: AI jobs that run in a pod or a local subprocess, and model promotion."""
