"""The feedback pipeline: an API that queues ratings in a Redis Stream, a worker that
stores them (and the turns the gateway records) durably, and an export to training data."""
