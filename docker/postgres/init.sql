-- One Postgres, two databases: MLflow's backend store (POSTGRES_DB) and Prefect's.
CREATE DATABASE prefect;
