//! The memory engine: one node, nothing to carry.

use crate::{Engine, EngineContext, EngineState};

/// One node alone: the default. The hub runs with `cluster` off, so the queue stays
/// empty; anything that does arrive (an outbound item, a shared-table write) has
/// nowhere to go and is dropped (and counted).
#[derive(Debug, Default)]
pub struct MemoryEngine;

#[async_trait::async_trait]
impl Engine for MemoryEngine {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn run(self: Box<Self>, mut ctx: EngineContext) {
        ctx.status.set_state(EngineState::Memory);
        let mut writes_open = true;
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                item = ctx.outbound.recv() => match crate::counted(&ctx.status, item) {
                    Some(_) => crate::EngineStatus::count(&ctx.status.dropped, 1),
                    None => {
                        ctx.shutdown.cancelled().await;
                        break;
                    }
                },
                write = ctx.tables.writes.recv(), if writes_open => match write {
                    Some(_) => crate::EngineStatus::count(&ctx.status.dropped, 1),
                    None => writes_open = false,
                },
            }
        }
        ctx.status.set_state(EngineState::Stopped);
    }
}
