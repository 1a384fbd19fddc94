CREATE DATABASE mlflow OWNER dagster;
