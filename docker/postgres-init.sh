#!/bin/sh
# Run once by the official postgres image on an empty data volume (/docker-entrypoint-initdb.d/):
# one server, one database for the Optuna study and one for MLflow, both owned by POSTGRES_USER.
set -eu
for db in "${OPTUNA_DB:?}" "${MLFLOW_DB:?}"; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --set db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
done
