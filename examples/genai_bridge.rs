// Run with a local Ollama (http, no key): cargo run --example genai_bridge --features tracing
// A genai call (its `otel` feature emits GenAI-convention `tracing` spans) seen by spanbus with
// no code of its own: the tracing bridge makes it an LLM call with model, tokens and cost in
// every output. Here genai is built without TLS; for a hosted provider enable its `rustls-tls`.
use genai::chat::{ChatMessage, ChatRequest};
use spanbus::SpanFutureExt;
use spanbus::handlers::SimpleSpanHandler;
use spanbus::integrations::tracing::SpanbusLayer;
use spanbus::llm::Prices;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = spanbus::get_dispatcher("app")?;
    let spans = SimpleSpanHandler::new();
    bus.add_span_handler(spans.clone())?;
    let subscriber = tracing_subscriber::registry().with(SpanbusLayer::new(bus.clone()));
    tracing::subscriber::set_global_default(subscriber)?;

    let model = std::env::var("MODEL").unwrap_or_else(|_| "llama3.2".to_owned());
    let request = ChatRequest::new(vec![ChatMessage::user("What is a span? One sentence.")]);
    let client = genai::Client::new()?;
    let call = client.exec_chat(&model, request, None);
    match call.in_span(bus.span("answer")).await {
        Ok(answer) => println!("{}", answer.first_text().unwrap_or_default()),
        Err(e) => println!("the call failed ({e}); its span says so below"),
    }

    spanbus::flush().await;
    // Prices are yours to give (spanbus ships none); a local model costs nothing.
    let prices = Prices::new().model(model.as_str(), 0.0, 0.0);
    print!("{}", spans.trace_trees().with_prices(prices));
    spanbus::shutdown(std::time::Duration::from_secs(5)).await;
    Ok(())
}
