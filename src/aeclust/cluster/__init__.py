"""Features → clusters: scaling, reducers, choosing k, neighbours, the clusterers."""
