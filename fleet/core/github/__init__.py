"""GitHub side of the control plane: App auth, REST client, runners, deliveries, signatures."""
