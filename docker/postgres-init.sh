#!/bin/sh
# Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/), as the
# superuser: one role per service, with the rights it needs, and the two databases.
#   betasweep_study      owns the study database: `study create` makes Optuna's tables
#   betasweep_worker     reads and writes the rows of those tables (no DDL)
#   betasweep_dashboard  reads them
#   betasweep_mlflow     owns MLflow's database (MLflow migrates its own schema)
# Passwords come from the environment (*_DB_PASSWORD), read by psql's \getenv: never on a command line.
# Idempotent: roles and databases that exist are kept (a second run only re-grants).
set -eu
: "${OPTUNA_DB:?}" "${MLFLOW_DB:?}" "${STUDY_DB_PASSWORD:?}" "${WORKER_DB_PASSWORD:?}" \
  "${DASHBOARD_DB_PASSWORD:?}" "${MLFLOW_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres <<'SQL'
\getenv optuna_db OPTUNA_DB
\getenv mlflow_db MLFLOW_DB
\getenv study_pw STUDY_DB_PASSWORD
\getenv worker_pw WORKER_DB_PASSWORD
\getenv dashboard_pw DASHBOARD_DB_PASSWORD
\getenv mlflow_pw MLFLOW_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', name, pw)
  FROM (VALUES ('betasweep_study', :'study_pw'), ('betasweep_worker', :'worker_pw'),
               ('betasweep_dashboard', :'dashboard_pw'), ('betasweep_mlflow', :'mlflow_pw')) AS r(name, pw)
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name)\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'optuna_db', 'betasweep_study')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'optuna_db')\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'mlflow_db', 'betasweep_mlflow')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'mlflow_db')\gexec
REVOKE ALL ON DATABASE :"optuna_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"mlflow_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"optuna_db" TO betasweep_worker, betasweep_dashboard;
\connect :"optuna_db"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO betasweep_worker, betasweep_dashboard;
ALTER DEFAULT PRIVILEGES FOR ROLE betasweep_study IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO betasweep_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE betasweep_study IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO betasweep_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE betasweep_study IN SCHEMA public GRANT SELECT ON TABLES TO betasweep_dashboard;
SQL
