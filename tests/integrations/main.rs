//! The bridges to other tools: `tracing` both ways (feature `tracing`), the OTLP exporter when
//! its endpoint is down and back, rejects batches, throttles or hangs (feature `otlp`), its
//! transports (HTTP/JSON, gRPC, TLS, gzip: features `otlp-json`, `otlp-grpc`, `otlp-tls`,
//! `otlp-gzip`), its configuration by variables and the Langfuse preset, the GenAI and
//! OpenInference attributes, the content policy, and the Phoenix and MLflow tests, which export
//! to a real Arize Phoenix (over HTTP and gRPC) or MLflow and read the spans back: ignored here,
//! run by `.ci/phoenix-tests.sh` and `.ci/mlflow-tests.sh`.
//!
//! One module per behaviour, each a test binary of its own before the tests were grouped by
//! area: `cargo test --all-features --test integrations <module>` runs one.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "otlp")]
mod a_batch_the_endpoint_rejects_for_good_is_dropped_counted_by_reason_and_every_other_span_is_exported;
#[cfg(feature = "tracing")]
mod a_genai_call_is_seen_as_an_llm_call_with_its_model_tokens_and_parent;
#[cfg(feature = "otlp-grpc")]
mod a_loopback_grpc_endpoint_receives_every_span_and_its_statuses_are_retried_or_rejected_like_http;
#[cfg(feature = "otlp-grpc")]
mod a_pipeline_trace_exported_over_grpc_reads_back_from_phoenix_with_parents_statuses_attributes_and_kinds;
#[cfg(feature = "otlp")]
mod a_pipeline_trace_reads_back_from_phoenix_with_parents_statuses_attributes_and_kinds;
#[cfg(feature = "otlp")]
mod a_return_value_recorded_by_ret_is_the_exported_spans_output;
#[cfg(feature = "otlp")]
mod building_the_otlp_exporter_on_a_runtime_without_a_time_driver_is_a_typed_error;
#[cfg(feature = "otlp")]
mod every_llm_embedding_retrieval_rerank_tool_and_agent_span_carries_the_genai_attributes;
#[cfg(any(feature = "otlp-json", feature = "otlp-gzip"))]
mod http_json_and_gzip_bodies_decode_whole_at_a_loopback_endpoint;
#[cfg(feature = "otlp")]
mod message_content_leaves_the_process_only_on_opt_in_through_the_redaction_hook_and_size_limit;
mod openinference_attributes_come_from_the_llm_event_catalog_in_either_shape;
#[cfg(feature = "otlp")]
mod otel_semconv_stability_opt_in_selects_the_genai_names;
#[cfg(feature = "otlp")]
mod otlp_settings_come_from_the_builder_then_the_traces_variables_then_the_generic_ones;
#[cfg(feature = "otlp")]
mod retry_after_on_a_429_holds_the_next_attempt_back;
#[cfg(feature = "otlp")]
mod shutdown_with_the_otlp_endpoint_hanging_ends_export_by_its_deadline_and_no_request_follows;
#[cfg(feature = "tracing")]
mod spanbus_records_appear_in_tracing;
#[cfg(feature = "otlp-tls")]
mod spans_reach_a_loopback_tls_endpoint_whose_ca_the_exporter_is_given;
#[cfg(feature = "otlp")]
mod the_langfuse_preset_sends_basic_auth_and_the_ingestion_version_with_every_span;
#[cfg(feature = "otlp")]
mod the_main_examples_traces_read_back_from_mlflow_with_models_and_token_usage;
#[cfg(feature = "otlp-grpc")]
mod the_main_examples_traces_read_back_from_phoenix_over_grpc;
#[cfg(feature = "otlp")]
mod the_otlp_exporter_never_blocks_counts_overflow_exactly_and_resumes_when_the_endpoint_returns;
#[cfg(feature = "tracing")]
mod the_tracing_bridge_does_not_loop;
#[cfg(feature = "tracing")]
mod tracing_events_become_spanbus_events_in_their_span;
#[cfg(feature = "tracing")]
mod tracing_spans_become_spanbus_spans_with_their_parents_names_and_fields;
#[cfg(feature = "otlp")]
mod two_processes_calling_over_http_with_traceparent_form_one_trace_in_phoenix;
