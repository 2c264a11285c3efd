#[spanbus::span(level = "info")]
fn step() {}

fn main() {
    step();
}
