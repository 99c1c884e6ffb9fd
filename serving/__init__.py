"""The BentoML service of clearsight (a thin adapter over ``clearsight.inference``)."""
