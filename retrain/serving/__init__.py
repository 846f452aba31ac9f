"""Serving the champion: one scoring module (payload -> scoring -> answer) used everywhere.

``payload`` (request body -> images), ``scoring`` (a registered model folder, loaded), ``answer``
(one request, one response) and ``azureml_score`` (``init()``/``run()``) import nothing else of
the service: Azure ML uploads this folder alone as a deployment's code. ``champion``, ``server``,
``local``, ``where`` and ``sample`` are ``python -m retrain serve`` and its helpers; ``rollout``
and ``smoke`` move each new champion onto an Azure ML online endpoint (``SERVE_ENDPOINT``).
"""
