"""The retraining service, one package per part:

- ``landing/``   the landing-zone layout, trigger decisions and batch validation
- ``ledger/``    run records in Table Storage
- ``service/``   what the triggers call: claims, submissions, the sweep, the HTTP face
- ``models/``    registered versions, the champion and the promotion rule
- ``notify/``    the outbox and its sinks (signed CloudEvents)
- ``backends/``  where the pipeline runs: Azure ML or this machine
- ``local/``     the local runner behind the local backend
- ``storage/``   the one seam to Azure Storage (blobs, queues, tables)
- ``cli/``       ``python -m retrain``
- ``data/``      Fashion-MNIST IDX files
- ``emulators/`` Azurite and a stand-in Functions host, for the demo and the tests

``errors``, ``settings`` and ``keys`` are shared by all. Triggers in ``function_app.py`` call
``service``; it asks ``pipeline_builder`` for the job and a backend to run it. Heavy SDKs
(azure.ai.ml, torch) are imported lazily, on first use.
"""
