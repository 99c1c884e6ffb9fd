"""Monitoring of what the service is asked: per-image features of inputs and of their
integrated-gradients maps, per-request out-of-distribution bounds, the traffic log, the
champion's training reference, and drift tests of served traffic against it."""
