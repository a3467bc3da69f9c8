//! Input checks and the output-filter chain: every enabled guard, in order.

use std::sync::Arc;

use crate::config::FailPolicy;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::registry::ComponentSet;
use crate::runtime::bindings::{Block, ChatRequest, Filtered, Verdict};
use crate::runtime::guard::OutputFilter;

use super::request::ParsedChat;

/// Runs every guard's `check-input`. A block or a fail-closed fault ends the
/// request; a rewrite changes the messages for the guards after it and for
/// the upstream.
pub async fn check_input(
    set: &ComponentSet,
    req: &mut ParsedChat,
    metrics: &Metrics,
) -> Result<(), ApiError> {
    for guard in &set.guards {
        match guard.check_input(&req.guard_view, metrics).await {
            Ok(Verdict::Allow) => {}
            Ok(Verdict::Block(b)) => {
                tracing::info!(
                    request_id = %req.guard_view.request_id,
                    guard = &*guard.name,
                    category = %b.category,
                    score = b.score,
                    "input blocked"
                );
                return Err(ApiError::content_filter(
                    &guard.name,
                    &b.category,
                    &b.reason,
                    b.score,
                ));
            }
            Ok(Verdict::Rewrite(messages)) => req.set_messages(messages),
            Err(fault) => match guard.settings.on_error {
                FailPolicy::Closed => {
                    return Err(ApiError::guard_unavailable(&guard.name, &fault.to_string()));
                }
                FailPolicy::Open => tracing::warn!(
                    guard = &*guard.name,
                    %fault,
                    "guard failed open; request continues without it"
                ),
            },
        }
    }
    Ok(())
}

/// A guard stopped the output.
#[derive(Debug, Clone)]
pub struct OutputBlock {
    pub guard: String,
    pub block: Block,
    /// True when the guard faulted (fail-closed) rather than blocked.
    pub fault: bool,
}

/// One output filter per guard that filters output, for one choice of one response.
pub struct FilterChain {
    filters: Vec<OutputFilter>,
}

impl FilterChain {
    /// Starts the filters. A guard whose filter cannot start fails the
    /// response when it is fail-closed.
    pub async fn start(
        set: &ComponentSet,
        req: &ChatRequest,
        metrics: &Metrics,
    ) -> Result<Self, OutputBlock> {
        let mut filters = Vec::new();
        for guard in set.guards.iter().filter(|g| g.info.filters_output) {
            match guard.output_filter(req, metrics).await {
                Ok(f) => filters.push(f),
                Err(fault) => handle_fault(guard, &fault.to_string())?,
            }
        }
        Ok(Self { filters })
    }

    /// Feeds a delta through every filter; returns the text to send now.
    pub async fn push(&mut self, text: String, metrics: &Metrics) -> Result<String, OutputBlock> {
        self.run(text, false, metrics).await
    }

    /// Ends the stream: flushes every filter in order.
    pub async fn finish(&mut self, metrics: &Metrics) -> Result<String, OutputBlock> {
        self.run(String::new(), true, metrics).await
    }

    async fn run(
        &mut self,
        mut text: String,
        finish: bool,
        metrics: &Metrics,
    ) -> Result<String, OutputBlock> {
        let mut i = 0;
        while i < self.filters.len() {
            let filter = &mut self.filters[i];
            let mut out = String::new();
            let mut failed = None;
            if !text.is_empty() {
                match filter.push(&text, metrics).await {
                    Ok(Filtered::Emit(t)) => out = t,
                    Ok(Filtered::Block(b)) => return Err(blocked(filter, b)),
                    Err(f) => failed = Some(f),
                }
            }
            if finish && failed.is_none() {
                match filter.finish(metrics).await {
                    Ok(Filtered::Emit(t)) => out.push_str(&t),
                    Ok(Filtered::Block(b)) => return Err(blocked(filter, b)),
                    Err(f) => failed = Some(f),
                }
            }
            if let Some(fault) = failed {
                let guard = filter.guard().clone();
                handle_fault(&guard, &fault.to_string())?;
                // Fail-open: drop this filter, pass the text on unchanged.
                self.filters.remove(i);
                continue;
            }
            text = out;
            if text.is_empty() && !finish {
                break;
            }
            i += 1;
        }
        Ok(text)
    }
}

fn blocked(filter: &OutputFilter, block: Block) -> OutputBlock {
    OutputBlock {
        guard: filter.guard().name.to_string(),
        block,
        fault: false,
    }
}

fn handle_fault(guard: &Arc<crate::runtime::guard::Guard>, why: &str) -> Result<(), OutputBlock> {
    match guard.settings.on_error {
        FailPolicy::Open => {
            tracing::warn!(
                guard = &*guard.name,
                fault = why,
                "output filter failed open"
            );
            Ok(())
        }
        FailPolicy::Closed => Err(OutputBlock {
            guard: guard.name.to_string(),
            block: Block {
                category: "guard_unavailable".into(),
                reason: format!("output filter of `{}` failed: {why}", guard.name),
                score: 1.0,
            },
            fault: true,
        }),
    }
}
