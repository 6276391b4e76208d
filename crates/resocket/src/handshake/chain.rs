//! `Chain` and `chain_handshakers!`: several handshake steps, in order.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{auth::run_step, HandshakeError, HandshakeIo, Handshaker};

/// Runs steps in order, each under its own timeout; a failure names the step
/// (`"step 2 (subscribe): …"`) and keeps its retry decision.
#[derive(Clone, Default)]
pub struct Chain {
    steps: Vec<Arc<dyn Handshaker>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|s| s.name()))
            .finish()
    }
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Chain::default()
    }

    /// Appends a step.
    pub fn then(mut self, step: impl Handshaker) -> Self {
        self.steps.push(Arc::new(step));
        self
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl Handshaker for Chain {
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(async move {
            for (index, step) in self.steps.iter().enumerate() {
                run_step(step.as_ref(), io)
                    .await
                    .map_err(|e| e.with_step(format!("step {} ({})", index + 1, step.name())))?;
            }
            Ok(())
        })
    }

    fn name(&self) -> &str {
        "chain"
    }
}

/// Builds a [`Chain`](crate::handshake::Chain) from steps:
/// `chain_handshakers!(auth, subscribe, hello)`.
#[macro_export]
macro_rules! chain_handshakers {
    ($($step:expr),+ $(,)?) => {
        $crate::handshake::Chain::new()$(.then($step))+
    };
}
