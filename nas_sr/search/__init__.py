"""The search: its loop, the weight-shared supernet, the proxy reward and rank statistics."""
