#[spanbus::span(dispatcher = "app..retriever")]
fn retrieve() {}

#[spanbus::span(dispatcher = "my app")]
fn answer() {}

fn main() {
    retrieve();
    answer();
}
