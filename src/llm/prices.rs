//! [`Prices`]: the user's price table, per model, per million input and output tokens.

use std::collections::BTreeMap;

/// The price of one model, in any currency, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input_per_million: f64,
    /// Per million output (completion) tokens.
    pub output_per_million: f64,
}

/// A price table: what each model costs per million input and output tokens.
///
/// spanbus ships no prices (they change, and differ by contract): an output shows a cost
/// only for models the table names. A model matches its exact name, else the longest name in
/// the table that it starts with, so `gpt-4o-mini` prices the dated `gpt-4o-mini-2024-07-18`
/// that providers answer with.
///
/// # Examples
///
/// ```
/// use spanbus::llm::Prices;
///
/// let prices = Prices::new()
///     .model("gpt-4o", 2.50, 10.00)
///     .model("gpt-4o-mini", 0.15, 0.60);
/// assert_eq!(prices.get("gpt-4o-mini-2024-07-18").unwrap().input_per_million, 0.15);
/// assert_eq!(prices.get("gpt-4o-2024-08-06").unwrap().output_per_million, 10.00);
/// assert!(prices.get("claude-3-5-haiku").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    models: BTreeMap<String, Price>,
}

impl Prices {
    /// An empty table: no costs shown.
    pub fn new() -> Prices {
        Prices::default()
    }

    /// Adds (or replaces) `model`'s price per million input and output tokens.
    pub fn model(mut self, model: impl Into<String>, input: f64, output: f64) -> Prices {
        self.models.insert(
            model.into(),
            Price {
                input_per_million: input,
                output_per_million: output,
            },
        );
        self
    }

    /// The price of `model`: its own, else that of the longest listed name it starts with.
    pub fn get(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.models.get(model) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}
