#[spanbus::span(dispatcher = "app")]
#[spanbus::span(name = "answer")]
fn answer() -> u32 {
    42
}

struct Llm;

#[spanbus::span(dispatcher = "app")]
impl Llm {
    #[span]
    #[span(skip_all)]
    fn complete(&self, prompt: &str) -> usize {
        prompt.len()
    }
}

fn main() {
    answer();
    Llm.complete("hi");
}
