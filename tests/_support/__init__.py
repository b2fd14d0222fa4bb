"""Support code for the tests, benchmarks and the demo: servers, the sample churn data, read-backs.

* :mod:`.servers` -- real MLflow, moto S3 and ``airflow standalone`` as subprocesses;
* :mod:`.server_fixtures` -- those servers as pytest fixtures (a plugin loaded by ``tests/conftest.py``);
* :mod:`.stack` -- the template kit running through the real scheduler (the demo and the e2e test);
* :mod:`.churn_sample` -- synthetic churn customers and a small registered churn model;
* :mod:`.airflow_records` -- what a DAG run left in the metadata DB and in MLflow;
* :mod:`.http_proxy` -- a loopback proxy that delays or fails chosen requests;
* :mod:`.system` -- process and filesystem helpers for the leftover tests.
"""
