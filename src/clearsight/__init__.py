"""clearsight: an explainable-image-model MLOps library.

Importing the package switches off the telemetry of the stack it drives (see ``offline``), so
every entry point (CLI, Prefect flows, BentoML service, tests) is quiet on the network.
"""

from clearsight.offline import disable_telemetry

disable_telemetry()

__version__ = "0.1.0"
