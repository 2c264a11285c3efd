#!/usr/bin/env bash
# Phoenix tests: install and start a throw-away Arize Phoenix on loopback, run the tests that
# export spans to it over OTLP and read them back, and always stop it.
# CI is set here, so those tests fail (never skip) when Phoenix is not reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== phoenix tests"
trap 'bash .ci/phoenix.sh stop' EXIT
bash .ci/phoenix.sh install
bash .ci/phoenix.sh start
SPANBUS_PHOENIX_URL="$(bash .ci/phoenix.sh url)"
SPANBUS_PHOENIX_GRPC_URL="$(bash .ci/phoenix.sh grpc-url)"
export SPANBUS_PHOENIX_URL SPANBUS_PHOENIX_GRPC_URL
export CI="${CI:-1}"
# One test runs the example's binary, which `cargo test --test integrations` does not build.
cargo build --all-features --example rag_pipeline
# The Phoenix tests are modules of the integrations binary: the filters pick them out.
cargo test --all-features --test integrations -- --include-ignored --nocapture \
    a_pipeline_trace_reads_back_from_phoenix_with_parents_statuses_attributes_and_kinds:: \
    a_pipeline_trace_exported_over_grpc_reads_back_from_phoenix_with_parents_statuses_attributes_and_kinds:: \
    the_main_examples_traces_read_back_from_phoenix_over_grpc:: \
    two_processes_calling_over_http_with_traceparent_form_one_trace_in_phoenix::
