struct Llm {
    name: String,
}

impl Llm {
    #[spanbus::span(dispatcher = self.name)]
    fn complete(&self, prompt: &str) -> usize {
        prompt.len()
    }
}

fn main() {
    Llm { name: "x".into() }.complete("hi");
}
