#!/usr/bin/env bash
# MLflow tests: install and start a throw-away MLflow tracking server on loopback, build the
# main example, run the test that exports the example's traces to MLflow over OTLP and reads
# them back through MLflow's REST API, and always stop the server.
# CI is set here, so the test fails (never skips) when MLflow or the example is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== mlflow tests"
trap 'bash .ci/mlflow.sh stop' EXIT
bash .ci/mlflow.sh install
bash .ci/mlflow.sh start
SPANBUS_MLFLOW_URL="$(bash .ci/mlflow.sh url)"
export SPANBUS_MLFLOW_URL
export CI="${CI:-1}"
# The test runs the example's binary, which `cargo test --test integrations` does not build.
cargo build --all-features --example rag_pipeline
# The MLflow test is a module of the integrations binary: the filter picks it out.
cargo test --all-features --test integrations -- --include-ignored --nocapture \
    the_main_examples_traces_read_back_from_mlflow_with_models_and_token_usage::
