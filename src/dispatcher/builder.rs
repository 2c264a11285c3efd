//! [`DispatcherBuilder`]: a dispatcher with an explicit parent, capacity and overflow.

use std::num::NonZeroUsize;

use super::{DEFAULT_CAPACITY, Dispatcher, validate_name};
use crate::error::NameError;

/// Builds a dispatcher outside the registry, with an explicit parent and settings.
///
/// # Examples
///
/// ```
/// use spanbus::Dispatcher;
///
/// let parent = Dispatcher::new("pipeline")?;
/// let child = Dispatcher::builder("pipeline.llm").parent(&parent).build()?;
/// assert_eq!(child.parent(), Some(parent));
/// # Ok::<(), spanbus::error::NameError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct DispatcherBuilder {
    name: String,
    parent: Option<Dispatcher>,
    propagate: bool,
    capacity: usize,
    overflow: Option<usize>,
}

impl Dispatcher {
    /// A builder for a standalone dispatcher.
    pub fn builder(name: &str) -> DispatcherBuilder {
        DispatcherBuilder {
            name: name.to_owned(),
            parent: None,
            propagate: true,
            capacity: DEFAULT_CAPACITY,
            overflow: None,
        }
    }
}

impl DispatcherBuilder {
    /// The parent that records propagate to.
    pub fn parent(mut self, parent: &Dispatcher) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Whether records go on to the parent's handlers (default `true`).
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }

    /// The capacity of the dispatcher's channel (default [`DEFAULT_CAPACITY`](crate::dispatcher::DEFAULT_CAPACITY)).
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity.get();
        self
    }

    /// How many records past its capacity the channel takes from emitters that cannot wait
    /// (default: the capacity, so the hard cap is twice the capacity). See
    /// [the bound](crate#the-bound) for what happens past it.
    pub fn overflow(mut self, overflow: usize) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Builds the dispatcher.
    ///
    /// # Errors
    ///
    /// [`NameError`] when the name is not a valid dotted name.
    pub fn build(self) -> Result<Dispatcher, NameError> {
        validate_name(&self.name)?;
        Ok(Dispatcher::from_parts(
            &self.name,
            self.parent,
            self.propagate,
            self.capacity,
            self.overflow.unwrap_or(self.capacity),
        ))
    }
}
