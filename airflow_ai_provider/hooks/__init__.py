"""The provider's Airflow hooks: the MLflow connection."""
