"""PostgreSQL store (``--store pg``) and the HA mode on it (``--ha pg``)."""
