struct Llm;

#[spanbus::span(skip(prompt))]
impl Llm {
    fn complete(&self, prompt: &str) -> usize {
        prompt.len()
    }
}

fn main() {
    Llm.complete("hi");
}
