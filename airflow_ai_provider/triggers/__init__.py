"""Event triggers of the provider: the landing watcher that starts a DAG when files land."""
