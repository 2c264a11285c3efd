//! What an LLM engineer looks at: model, tokens, cost and time to first token, per span and
//! rolled up per trace, session, user and model.
//!
//! One piece of code reads the LLM events of a span — [`LlmSummary`] — and every output uses
//! it: [`SimpleSpanHandler`](crate::handlers::SimpleSpanHandler) keeps one per closed span
//! ([`ClosedSpan::llm`](crate::handlers::ClosedSpan::llm)), the trace trees print it on the
//! span's line, and [`Rollups`] adds them up. Costs come from a [`Prices`] table the user
//! supplies: spanbus ships no prices.
//!
//! | what | read from (in the event catalog, llama-index's shapes) |
//! |---|---|
//! | operation | the event class: `chat` (`LLMChat*`, `StreamChat*`), `text_completion` (`LLMCompletion*`, `LLMPredict*`, `LLMStructuredPredict*`), `embeddings` (`Embedding*`, `SparseEmbedding*`) |
//! | model | the response's `additional_kwargs.model`, `raw.model` or `model`; else the start event's `model_dict` (`model`, `model_name`) |
//! | provider | the start event's `model_dict` (`provider`, else `class_name`) |
//! | input / output tokens | the response's `additional_kwargs`, `raw.usage`, `usage` or itself: `prompt_tokens`/`input_tokens`, `completion_tokens`/`output_tokens`; an embedding's `token_count` |
//! | cache-read / reasoning tokens | the same places: `cached_tokens`, `cache_read_input_tokens`, `prompt_tokens_details.cached_tokens`; `reasoning_tokens`, `completion_tokens_details.reasoning_tokens` |
//! | time to first token | the first start event to the first in-progress event (`LLMChatInProgressEvent`, `LLMCompletionInProgressEvent`, `StreamChatDeltaReceivedEvent`); else the response's `additional_kwargs.time_to_first_chunk` (seconds, as the tracing bridge writes it) |
//! | chunks | in-progress events |
//! | finish reason | the response's `additional_kwargs.finish_reason`, `raw.choices[0].finish_reason`, `raw.stop_reason` or `finish_reason` |
//!
//! A stream dropped early keeps what it saw (its chunks, the time to the first, the last
//! counts a chunk carried); its span says `Cancelled`.

mod prices;
mod rollup;
mod summary;

pub use prices::{Price, Prices};
pub use rollup::{LlmTotals, Rollups};
pub use summary::LlmSummary;
pub(crate) use summary::format_cost;
