"""HTTP endpoints that accept deliveries."""
