"""Serving-side logic: request schemas, image decoding, batched prediction, explanations on
request, the Open Inference Protocol, HTTP guards and a client.

``serving/`` (the BentoML service) only wires these to routes. Modules are imported on demand:
``schemas``, ``settings``, ``errors`` and ``client`` are light (pydantic, httpx), while
``predictor`` and ``explanations`` bring Keras and the model.
"""
