"""The retraining service: settings, landing-zone batches, validation, run ledger, decisions,
backends (azureml | local), status sweep and the command line (``python -m retrain``).

Triggers in ``function_app.py`` call into this package; it asks ``pipeline_builder`` for the job
and a backend to run it. Heavy SDKs (azure.ai.ml, torch) are imported lazily, on first use.
"""
