"""The service side: subscriptions and their matcher, the HTTP API, auth, the push gateway."""
