"""A team's shared record: runs, cv groups, sweeps and studies logged to an MLflow server."""
