"""Request handling without a web framework: schemas, image decoding, prediction with
explanations within a budget (``budget``: units per request; ``scheduling``: chunks shared
round-robin between requests), the Open Inference Protocol's types, provenance and a client.

``serving/`` (BentoML, FastAPI, Starlette) wires these to routes; nothing here imports them.
Modules are imported on demand: ``schemas``, ``settings`` and ``client`` are light (pydantic,
httpx), while ``predictor`` and ``explanations`` bring Keras and the model.
"""
